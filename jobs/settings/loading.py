"""Loading the settings: the sources (the YAML files, the environment) merged in order and validated into
`Settings`; a bad key fails naming it and the source that set it."""
from __future__ import annotations

import os
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import (BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict,
                               YamlConfigSettingsSource)
from pydantic_settings import SettingsError as PydanticSettingsError

from jobs.gate import GatePolicy
from jobs.retrain import RetrainPolicy
from jobs.settings.sections import (CONFIG_DIR, DEFAULT_ENV, ENV_PREFIX, REPO_ROOT, AirflowSettings, DataSettings,
                                    FeatureSettings, IngestSettings, LakeSettings, MlflowSettings, MonitoringSettings,
                                    NotificationSettings, RunnerSettings, ScoringSettings, SensorSettings,
                                    SettingsError, SparkSettings, TrainingSettings)

class Settings(BaseSettings):
    """Every section, from the sources of settings_customise_sources; load with load_settings/get_settings."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True, env_prefix=ENV_PREFIX, env_nested_delimiter="__",
                                      env_ignore_empty=True, env_parse_none_str="null")

    env: str
    lake: LakeSettings
    data: DataSettings
    ingest: IngestSettings
    sensors: SensorSettings
    airflow: AirflowSettings
    mlflow: MlflowSettings
    runner: RunnerSettings
    spark: SparkSettings
    features: FeatureSettings
    training: TrainingSettings
    gate: GatePolicy
    scoring: ScoringSettings = ScoringSettings()
    monitoring: MonitoringSettings
    retraining: RetrainPolicy
    notifications: NotificationSettings = NotificationSettings()

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   **_: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        """First wins: the arguments (env), the environment, the overlay, the base file (no .env, no secrets dir)."""
        env = init_settings.init_kwargs["env"]
        return init_settings, *(source for _, source in _sources(settings_cls, env, _config_dir.get()))

    @property
    def lake_root(self) -> str:
        """The lake root as a URI or absolute path (relative roots hang off the repo)."""
        root = self.lake.root
        if "://" in root:
            return root.rstrip("/")
        path = Path(root)
        return str(path if path.is_absolute() else (REPO_ROOT / path).resolve())


class _YamlFile(YamlConfigSettingsSource):
    """One settings file; a file that is not YAML, or not a mapping, fails naming it."""

    def _read_file(self, file_path: Path) -> dict[str, Any]:  # type: ignore[override]
        try:
            content = super()._read_file(file_path)
        except yaml.YAMLError as exc:
            raise SettingsError(f"{file_path}: not valid YAML: {exc}") from exc
        if not isinstance(content, dict):
            raise SettingsError(f"{file_path}: top level must be a mapping, got {type(content).__name__}")
        return content


# Variables that set one key each, for the tools that already know them (MLflow, the stack).
ENV_ALIASES = {"LAKE_ROOT": ("lake", "root"), "MLFLOW_TRACKING_URI": ("mlflow", "tracking_uri")}


class EnvironmentSource(EnvSettingsSource):
    """`PIPELINE__SECTION__KEY=value` sets `section.key`, the value parsed as YAML (so
    `PIPELINE__NOTIFICATIONS__TO='[you@example.org]'`); ENV_ALIASES' variables their key.
    A section that does not exist is kept, so that validation refuses it by name."""

    def _field_is_complex(self, field: Any) -> tuple[bool, bool]:
        # Every value is YAML, a text key's too (as in the files): '"spark"' is the text spark, and a
        # number given for a text key is refused by name. pydantic-settings decodes complex fields only.
        return True, False

    def decode_complex_value(self, field_name: str, field: Any, value: Any) -> Any:
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"{field_name}: not valid YAML: {exc}") from None

    def __call__(self) -> dict[str, Any]:
        tree = super().__call__()
        for name, value in self.env_vars.items():  # lower-cased, empty ones left out
            section = name.removeprefix(self.env_prefix.lower()).split(self.env_nested_delimiter)[0]
            if name.startswith(self.env_prefix.lower()) and section not in self.settings_cls.model_fields:
                tree[section] = value
        for variable, (section, key) in ENV_ALIASES.items():
            if os.environ.get(variable):
                tree.setdefault(section, {})[key] = os.environ[variable]
        return tree


ENVIRONMENT = f"the environment ({ENV_PREFIX}* / {' / '.join(ENV_ALIASES)})"
_config_dir: ContextVar[Path] = ContextVar("config_dir", default=CONFIG_DIR)


def _sources(settings_cls: type[BaseSettings], env: str,
             config_dir: Path) -> list[tuple[str, PydanticBaseSettingsSource]]:
    """(name, source) of each source but the arguments, first wins: the names blame a bad key's source."""
    overlay_file = config_dir / "overlays" / f"{env}.yaml"
    if not overlay_file.exists():
        known = sorted(p.stem for p in (config_dir / "overlays").glob("*.yaml"))
        raise SettingsError(f"PIPELINE_ENV={env!r}: no overlay {overlay_file} (known: {', '.join(known)})")
    return [(ENVIRONMENT, EnvironmentSource(settings_cls)), (str(overlay_file), _YamlFile(settings_cls, overlay_file)),
            (str(config_dir / "settings.yaml"), _YamlFile(settings_cls, config_dir / "settings.yaml"))]


_MISSING = object()


def _lookup(tree: Any, loc: tuple[Any, ...]) -> Any:
    """The value at `loc` in one parsed file, or _MISSING."""
    for part in loc:
        if part == "[key]":  # pydantic's marker for a bad mapping key: the key is the previous part
            continue
        if isinstance(tree, dict) and part in tree:
            tree = tree[part]
        elif isinstance(tree, list) and isinstance(part, int) and 0 <= part < len(tree):
            tree = tree[part]
        else:
            return _MISSING
    return tree


def _describe(exc: ValidationError, sources: list[tuple[str, dict[str, Any]]]) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        dotted = ".".join(str(part) for part in loc)
        origin = []
        # First source first: a mapping it sets merges with the next one's, any other value replaces it.
        for name, tree in sources:
            value = _lookup(tree, loc)
            if value is _MISSING:
                continue
            origin.append(name)
            if not isinstance(value, dict):
                break
        where = f" (set in {', '.join(origin)})" if origin else ""
        lines.append(f"  {dotted}: {error['msg']}{where}")
    return "invalid settings:\n" + "\n".join(lines)


def load_settings(env: str | None = None, config_dir: Path | None = None) -> Settings:
    """Load and validate settings for `env` (default: $PIPELINE_ENV or 'local')."""
    env = env or os.environ.get("PIPELINE_ENV") or DEFAULT_ENV
    config_dir = config_dir or CONFIG_DIR
    token = _config_dir.set(config_dir)
    try:
        return Settings(env=env)
    except ValidationError as exc:
        sources = [(name, source()) for name, source in _sources(Settings, env, config_dir)]
        raise SettingsError(_describe(exc, sources)) from None
    except PydanticSettingsError as exc:  # a variable's value that is not YAML
        raise SettingsError(f"{ENVIRONMENT}: {exc}: {exc.__cause__}") from None
    finally:
        _config_dir.reset(token)


@lru_cache(maxsize=8)
def _cached(env: str, overrides: tuple[tuple[str, str], ...]) -> Settings:
    return load_settings(env)


def get_settings() -> Settings:
    """Settings for the current process, cached per environment (PIPELINE_ENV and overrides)."""
    overrides = tuple(
        sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX) or k in ENV_ALIASES)
    )
    return _cached(os.environ.get("PIPELINE_ENV") or DEFAULT_ENV, overrides)
