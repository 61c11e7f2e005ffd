"""One settings object for the whole pipeline.

`config/settings.yaml` holds every path, threshold, image tag and schedule once;
the overlay `config/overlays/$PIPELINE_ENV.yaml` is deep-merged over it, then
`PIPELINE__SECTION__KEY` variables from the environment (EnvironmentSource), and
the result is validated by the typed model below. A wrong key or value fails at load
with its dotted path and the file(s) that set it.

The sources are pydantic-settings' (`Settings.settings_customise_sources`: its YAML file
source and its environment source with `env_prefix="PIPELINE__"`, `env_nested_delimiter="__"`).
Kept as our own, because the library's would lose a message or the behaviour:
- the file's name in "not valid YAML" / "not a mapping" (the library raises bare YAML errors);
- values parsed as YAML, not JSON (`PIPELINE__NOTIFICATIONS__TO='[you@example.org]'`, README);
- an unknown section (`PIPELINE__NOPE__X`) refused by name (the library drops it silently);
- `LAKE_ROOT` and `MLFLOW_TRACKING_URI`, which set a key of a section;
- `_describe`: which source set each bad key (the library reports the merged values only).

This module is imported by DAG files at parse time, so it stays light: YAML and
pydantic only, no I/O beyond reading the two files.
"""
from __future__ import annotations

from jobs.settings.loading import ENV_ALIASES, ENVIRONMENT, Settings, get_settings, load_settings
from jobs.settings.sections import *  # noqa: F403 - every section model, as before the split
from jobs.settings.sections import (BASE_FILE, CONFIG_DIR, DEFAULT_ENV, ENV_PREFIX, FEEDS, OVERLAY_DIR, REPO_ROOT,
                                    Feed, SettingsError)

__all__ = ["BASE_FILE", "CONFIG_DIR", "DEFAULT_ENV", "ENV_ALIASES", "ENV_PREFIX", "ENVIRONMENT", "FEEDS", "Feed",
           "OVERLAY_DIR", "REPO_ROOT", "Settings", "SettingsError", "get_settings", "load_settings"]
