"""What a backtest is asked (BacktestRequest), checked against the lake and the registry into a Plan."""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from jobs.lake import Lake, partition_key, raw_key, report_key

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from jobs.serving import ServingModel
    from jobs.settings import Settings
    from jobs.training_set import Windows

# Days of the default window (the last labelled ones). Candidate setting: backtest.window_days.
DEFAULT_WINDOW_DAYS = 14
DEFAULT_ALIAS = "champion"
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")


class BacktestRejected(ValueError):
    """The request cannot be backtested as asked: names every problem."""


class NothingToBacktest(RuntimeError):
    """No model behind the alias yet, or no labelled day at all: a skip with its reason."""


@dataclasses.dataclass(frozen=True)
class BacktestRequest:
    """What to backtest. Every field is optional; see the module docstring for the defaults."""

    start: dt.date | None = None
    end: dt.date | None = None
    version: str | None = None
    alias: str | None = None
    train_start: dt.date | None = None
    train_end: dt.date | None = None
    holdout_start: dt.date | None = None
    holdout_end: dt.date | None = None
    family: str | None = None
    seed: int | None = None
    backtest_id: str | None = None
    reason: str = ""

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> "BacktestRequest":
        """From a dict of strings (a DAG conf, the year replay); unknown keys are an error naming them."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(payload) - set(fields))
        if unknown:
            raise BacktestRejected(f"unknown backtest request field(s) {unknown} (known: {sorted(fields)})")
        values: dict[str, Any] = {}
        problems = []
        for name, value in payload.items():
            if value in (None, ""):
                continue
            if "date" in str(fields[name].type) and not isinstance(value, dt.date):
                try:
                    value = dt.date.fromisoformat(str(value)[:10])
                except ValueError:
                    problems.append(f"{name} {value!r} is not a date (YYYY-MM-DD)")
                    continue
            if name == "seed":
                try:
                    value = int(value)
                except (TypeError, ValueError):
                    problems.append(f"seed {value!r} is not a whole number")
                    continue
            values[name] = str(value) if name == "version" else value
        if problems:
            raise BacktestRejected("; ".join(problems))
        return cls(**values)

    @property
    def trains(self) -> bool:
        return self.train_start is not None or self.train_end is not None

    def to_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in dataclasses.asdict(self).items()
                if v not in (None, "")}


@dataclasses.dataclass
class Plan:
    """A checked request: the window, the days to compare, where the model comes from, the id."""

    start: dt.date
    end: dt.date
    days: list[str]  # dates with features and outcomes
    left_out: dict[str, str]  # date -> why it is not compared
    backtest_id: str
    model: "ServingModel | None"  # None until trained
    windows: "Windows | None" = None  # training windows, when the request trains
    train_key: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)


def backtest_key(backtest_id: str, name: str = "") -> str:
    return report_key("backtest", backtest_id, name) if name else report_key("backtest", backtest_id)


def backtest_predictions_key(backtest_id: str, ds: str) -> str:
    return partition_key("reports", f"backtest/{backtest_id}/predictions", ds)


# Checking the request ----------------------------------------------------------------------

def _window(request: BacktestRequest, lake: Lake, first: dt.date, last: dt.date) -> tuple[dt.date, dt.date]:
    """The window asked for, or its defaults (module docstring)."""
    from jobs.training_set import last_labelled_date

    span = dt.timedelta(days=DEFAULT_WINDOW_DAYS - 1)
    start, end = request.start, request.end
    if start is None and end is None:
        end = last_labelled_date(lake)
        if end is None:
            raise NothingToBacktest("no labelled day in the lake yet (features and outcomes): nothing to backtest")
    if start is None:
        start = max(end - span, first)
    if end is None:
        end = min(start + span, last)
    return start, end


def _version_problems(mlflow_client: "MlflowClient", name: str, version: str) -> tuple[Any, list[str]]:
    """(the registered version, []) or (None, [why it cannot be backtested])."""
    from mlflow.exceptions import MlflowException

    if not version.isdigit():
        return None, [f"version {version!r} is not a version number"]
    try:
        found = mlflow_client.get_model_version(name, version)
    except MlflowException:
        known = sorted(int(v.version) for v in mlflow_client.search_model_versions(f"name = '{name}'"))
        return None, [f"{name} version {version} does not exist (registered versions: "
                      f"{', '.join(map(str, known)) or 'none'})"]
    if found.status not in (None, "READY"):
        return None, [f"{name} version {version} is {found.status}, not READY"]
    return found, []


def _training_windows(request: BacktestRequest, settings: "Settings", problems: list[str]) -> "Windows | None":
    from jobs.training_set import Windows

    data = settings.data
    if request.train_start is None or request.train_end is None:
        problems.append("a training window needs both train_start and train_end")
        return None
    holdout_start = request.holdout_start or request.train_end + dt.timedelta(days=1)
    holdout_end = request.holdout_end or min(holdout_start + dt.timedelta(days=settings.training.holdout_days - 1),
                                             data.last_flight_date)
    for name, day in (("train_start", request.train_start), ("train_end", request.train_end),
                      ("holdout_start", holdout_start), ("holdout_end", holdout_end)):
        if not data.covers(day):
            problems.append(f"{name} {day} is outside the source's flight dates "
                            f"({data.first_flight_date}..{data.last_flight_date})")
    try:
        return Windows(request.train_start, request.train_end, holdout_start, holdout_end)
    except ValueError as exc:
        problems.append(str(exc))
        return None


def _train_key(lake: Lake, windows: "Windows", request: BacktestRequest, settings: "Settings",
               problems: list[str]) -> str | None:
    """The identity of the model the request trains (None, with the problem, when its windows cannot train)."""
    from jobs.features import load_feature_schema
    from jobs.training_set import SPLITS, plan_inputs, set_id_of

    plan = plan_inputs(lake, windows)
    for split in SPLITS:
        if not plan[split].features:
            dates = windows.dates(split)
            problems.append(f"{split} window {dates[0]}..{dates[-1]} has no date with both features and outcomes")
    if problems:
        return None
    defaults = settings.training
    identity = {"set_id": set_id_of(windows, plan, load_feature_schema(settings.features.schema_path).sha256),
                "family": request.family or defaults.family, "seed": defaults.seed if request.seed is None else request.seed,
                "epochs": defaults.epochs, "batch_size": defaults.batch_size, "learning_rate": defaults.learning_rate,
                "validation_days": defaults.validation_days, "exclude": list(defaults.exclude_features)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def _overlap(first: tuple[dt.date, dt.date], second: tuple[dt.date, dt.date]) -> bool:
    return first[0] <= second[1] and second[0] <= first[1]


def check_request(lake: Lake, request: BacktestRequest, settings: "Settings",
                  mlflow_client: "MlflowClient") -> Plan:
    """The plan of a request, or BacktestRejected naming every problem (NothingToBacktest for a skip)."""
    from jobs.features import features_key
    from jobs.registry import alias_version
    from jobs.serving import ServingModel

    data, name = settings.data, settings.mlflow.model_name
    problems: list[str] = []
    if request.trains and (request.version or request.alias):
        problems.append("give a training window or a version/alias, not both")
    if request.version and request.alias:
        problems.append(f"give --version or --alias, not both (version {request.version}, alias {request.alias})")
    if request.backtest_id is not None and not ID_PATTERN.match(request.backtest_id):
        problems.append(f"id {request.backtest_id!r} must be letters, digits, '.', '_' or '-' (at most 120)")
    start, end = _window(request, lake, data.first_flight_date, data.last_flight_date)
    if end < start:
        problems.append(f"the window ends ({end}) before it starts ({start})")
    for what, day in (("start", start), ("end", end)):
        if not data.covers(day):
            problems.append(f"{what} {day} is outside the source's flight dates "
                            f"({data.first_flight_date}..{data.last_flight_date})")

    days: list[str] = []
    left_out: dict[str, str] = {}
    if not problems:
        window = [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
        features = {ds for ds in window if lake.partition_exists(features_key(ds))}
        outcomes = {ds for ds in window if lake.partition_exists(raw_key("flights", ds))}
        if not features:
            problems.append(f"no features partition in the window {start}..{end} "
                            f"({lake.uri(features_key(start.isoformat()))} ...): build them with flights_features")
        if not outcomes:
            problems.append(f"no labels in the window {start}..{end}: no outcomes partition "
                            f"({lake.uri(raw_key('flights', start.isoformat()))} ...) has arrived")
        if features and outcomes and not features & outcomes:
            problems.append(f"no date of the window {start}..{end} has both features and outcomes")
        days = [ds for ds in window if ds in features and ds in outcomes]
        left_out = {ds: ("no features partition" if ds not in features else "no outcomes (labels) yet")
                    for ds in window if ds not in days}

    model, windows, train_key, warnings = None, None, None, []
    threshold = settings.training.decision_threshold
    if request.trains:
        windows = _training_windows(request, settings, problems)
        if windows is not None and _overlap((windows.train_start, windows.train_end), (start, end)):
            problems.append(f"the training window {windows.train_start}..{windows.train_end} overlaps the backtest "
                            f"window {start}..{end}: the model would be scored on its own training days")
        if windows is not None and not problems:
            train_key = _train_key(lake, windows, request, settings, problems)
    elif request.version:
        found, found_problems = _version_problems(mlflow_client, name, request.version)
        problems.extend(found_problems)
        if found is not None:
            model = ServingModel(name, str(found.version), found.run_id, threshold)
    else:
        alias = request.alias or DEFAULT_ALIAS
        version = alias_version(mlflow_client, name, alias)
        if version is None and not problems:
            raise NothingToBacktest(f"no {name}@{alias} yet: nothing to backtest")
        if version is not None:
            found, found_problems = _version_problems(mlflow_client, name, version)
            problems.extend(f"{name}@{alias}: {problem}" for problem in found_problems)
            if found is not None:
                model = ServingModel(name, str(found.version), found.run_id, threshold)
    if problems:
        raise BacktestRejected("; ".join(problems))

    if model is not None:
        tags = mlflow_client.get_run(model.run_id).data.tags if model.run_id else {}
        trained = (tags.get("window.train_start"), tags.get("window.train_end"))
        if all(trained) and _overlap(tuple(map(dt.date.fromisoformat, trained)), (start, end)):  # type: ignore[arg-type]
            warnings.append(f"version {model.version} was trained on {trained[0]}..{trained[1]}, which overlaps the "
                            f"window: those days are in-sample")
    backtest_id = request.backtest_id or (
        f"v{model.version}_{start}_{end}" if model is not None
        else f"window_{windows.train_start}_{windows.train_end}_{start}_{end}_{train_key[:8]}")  # type: ignore[union-attr,index]
    return Plan(start, end, days, left_out, backtest_id, model, windows, train_key, warnings)

