"""The model's health in one view, gathered from MLflow's registry and the lake (no store of its own).

    python -m jobs.health                    # champion, challenger, previous; the last 30 served days
    python -m jobs.health --days 90 --json   # the whole view as JSON (what /pipeline/health shows)

What it gathers:
- the three aliases (`champion`, `challenger`, `previous`) with their holdout metrics and gate
  decision, read from each version's model card (`reports/training/{model}/version={N}/`);
- by flight date, what monitoring measured (`reports/drift/{ds}/summary.json`): the serving
  version, drift share, dataset drift, served ROC AUC once labels arrived, the retraining decision;
- every training of the loop (the registry's versions and their tags) with its reason, gate
  decision and whether it was promoted;
- quarantined deliveries by day and feed (`quarantine/{feed}/date={ds}/attempt=*/validation.json`);
- the year replay's evidence (`reports/replay/{year}/replay.json`) when it exists.
An empty registry is a view with no model, not an error; MLflow unreachable is an error naming its URI.
"""
from __future__ import annotations

import datetime as dt
import io
import logging
import re
import sys
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from jobs.cli import print_view, step_parser
from jobs.lake import Lake, report_key

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from jobs.settings import Settings

log = logging.getLogger("jobs.health")

DEFAULT_DAYS = 30
MAX_DAYS = 366
_DRIFT_SUMMARY = re.compile(r"^reports/drift/(\d{4}-\d{2}-\d{2})/summary\.json$")
_QUARANTINE_RECORD = re.compile(r"^quarantine/(\w+)/date=(\d{4}-\d{2}-\d{2})/(attempt=[^/]+)/validation\.json$")
_REPLAY = re.compile(r"^reports/replay/(\d{4})/replay\.json$")


def mlflow_links(settings: "Settings") -> "MlflowLinks":
    return MlflowLinks(settings.mlflow.ui_url or settings.mlflow.tracking_uri, settings.mlflow.model_name)


class MlflowLinks:
    """Pages of the MLflow UI (none when the tracking URI is not a web server, e.g. a SQLite file)."""

    def __init__(self, base: str, model: str):
        self.base = base.rstrip("/") if base.startswith(("http://", "https://")) else None
        self.model = model

    def version(self, version: str) -> str | None:
        return f"{self.base}/#/models/{self.model}/versions/{version}" if self.base else None

    def run(self, experiment_id: str | None, run_id: str | None) -> str | None:
        if not (self.base and experiment_id and run_id):
            return None
        return f"{self.base}/#/experiments/{experiment_id}/runs/{run_id}"


def _card(lake: Lake, model: str, version: str) -> dict[str, Any] | None:
    from jobs.evaluate import model_card_key

    key = f"{model_card_key(model, version)}/model_card.json"
    return lake.read_json(key) if lake.exists(key) else None


def alias_cards(lake: Lake, mlflow_client: "MlflowClient", settings: "Settings") -> list[dict[str, Any]]:
    """Champion, challenger and previous: version, holdout metrics, gate decision, promotion, links."""
    from mlflow.exceptions import MlflowException

    from jobs.evaluate import model_card_key
    from jobs.registry import ALIASES, alias_version

    name, links = settings.mlflow.model_name, mlflow_links(settings)
    cards = []
    for alias in ALIASES:
        version = alias_version(mlflow_client, name, alias)
        if version is None:
            cards.append({"alias": alias, "version": None})
            continue
        registered = mlflow_client.get_model_version(name, version)
        tags = registered.tags or {}
        try:
            run = mlflow_client.get_run(registered.run_id) if registered.run_id else None
        except MlflowException:  # the run was deleted: the version still shows, without its run's facts
            run = None
        card = _card(lake, name, version)
        candidate = (card or {}).get("models", {}).get("candidate", {}).get("metrics", {})
        decision = (card or {}).get("decision", {})
        cards.append({
            "alias": alias, "version": version, "family": run.data.tags.get("family") if run else None,
            "reason": run.data.tags.get("reason", "") if run else "",
            "window": {k.removeprefix("window."): v for k, v in (run.data.tags if run else {}).items()
                       if k.startswith("window.")},
            "holdout": {k: candidate.get(k) for k in ("roc_auc", "pr_auc", "log_loss", "brier")},
            "holdout_period": (card or {}).get("holdout"),
            "gate_passed": decision.get("passed", (tags.get("gate_passed") == "true") if "gate_passed" in tags else None),
            "gate_reasons": decision.get("reasons") or [r for r in tags.get("gate_reasons", "").split(" | ") if r],
            "promoted_at": tags.get("promoted_at"), "rolled_back_at": tags.get("rolled_back_at"),
            "model_card_key": f"{model_card_key(name, version)}/model_card.html" if card else None,
            "mlflow_version_url": links.version(version),
            "mlflow_run_url": links.run(run.info.experiment_id, run.info.run_id) if run else None,
        })
    return cards


def served_days(lake: Lake, start: dt.date | None = None, end: dt.date | None = None) -> list[dict[str, Any]]:
    """What monitoring recorded for each flight date in [start, end] (all when open), oldest first."""
    days = []
    for key in lake.list(report_key("drift")):
        match = _DRIFT_SUMMARY.match(key)
        if not match:
            continue
        day = dt.date.fromisoformat(match.group(1))
        if (start and day < start) or (end and day > end):
            continue
        summary = lake.read_json(key)
        drift, performance = summary.get("data_drift", {}), summary.get("performance", {})
        window = performance.get("window") or [None, None]
        days.append({
            "ds": match.group(1), "version": str(summary.get("model", {}).get("version", "")),
            "drift_share": drift.get("drift_share"), "dataset_drift": bool(drift.get("dataset_drift")),
            "drifted_columns": (drift.get("drifted_columns") or [])[:5],
            "served_auc": performance.get("metrics", {}).get("roc_auc"),
            "served_through": window[-1] if performance.get("status") == "measured" else None,
            "labelled_rows": performance.get("labelled_rows"),
            "retrain": bool(summary.get("decision", {}).get("retrain")),
            "decision": summary.get("decision", {}).get("summary", ""),
            "report_key": f"{report_key('drift', match.group(1))}/data_drift.html",
        })
    return days


def quarantined(lake: Lake, start: dt.date | None = None, end: dt.date | None = None) -> list[dict[str, Any]]:
    """Each quarantined delivery (one attempt of one feed of one day): status, rows read and set aside."""
    rows = []
    for key in lake.list("quarantine"):
        match = _QUARANTINE_RECORD.match(key)
        if not match:
            continue
        feed, ds, attempt = match.groups()
        day = dt.date.fromisoformat(ds)
        if (start and day < start) or (end and day > end):
            continue
        record = lake.read_json(key)
        rows.append({"ds": ds, "feed": feed, "attempt": attempt.removeprefix("attempt="),
                     "status": record.get("status"), "rows_read": record.get("rows_read"),
                     "quarantined_rows": record.get("quarantined_rows") or
                     (record.get("rows_read") if record.get("status") == "rejected" else 0),
                     "message": (record.get("message") or "")[:300], "key": key.rsplit("/", 1)[0]})
    return sorted(rows, key=lambda r: (r["ds"], r["feed"], r["attempt"]))


def replay_evidence(lake: Lake) -> list[dict[str, Any]]:
    """The year replays' summaries (reports/replay/{year}/), newest year first."""
    found = []
    for key in lake.list(report_key("replay")):
        match = _REPLAY.match(key)
        if match:
            summary = lake.read_json(key)
            found.append({"year": int(match.group(1)), "mean_roc_auc": summary.get("mean_roc_auc", {}),
                          "by_period": summary.get("by_period", []),
                          "html_key": report_key("replay", match.group(1), "replay.html"),
                          "png_key": report_key("replay", match.group(1), "replay.png")})
    return sorted(found, key=lambda r: -r["year"])


def model_health(lake: Lake, settings: "Settings", *, mlflow_client: "MlflowClient | None" = None,
                 days: int = DEFAULT_DAYS, end: dt.date | None = None) -> dict[str, Any]:
    """The whole view: the last `days` monitored flight dates up to `end` (the newest monitored day when None)."""
    from jobs.registry import client, training_log

    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    mlflow_client = mlflow_client or client(settings.mlflow.tracking_uri)
    name, links = settings.mlflow.model_name, mlflow_links(settings)
    cards = alias_cards(lake, mlflow_client, settings)
    every_day = served_days(lake, end=end)
    last = end or (dt.date.fromisoformat(every_day[-1]["ds"]) if every_day else None)
    first = last - dt.timedelta(days=days - 1) if last else None
    shown = [d for d in every_day if first is None or d["ds"] >= first.isoformat()]
    trainings = training_log(mlflow_client, name)
    for training in trainings:
        training["mlflow_version_url"] = links.version(training["version"])
        training["model_card_key"] = (f"reports/training/{name}/version={training['version']}/model_card.html"
                                      if _card(lake, name, training["version"]) else None)
    served_versions = []
    previous = None
    for day in every_day:  # the first day each version served: a promotion (or a rollback) took effect
        if day["version"] != previous:
            served_versions.append({"ds": day["ds"], "version": day["version"], "replaced": previous})
            previous = day["version"]
    return {
        "model": name, "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "has_model": any(card["version"] for card in cards), "aliases": cards,
        # The window as asked, but never before the first monitored day (nothing to show there).
        "window": {"first": max(first.isoformat(), every_day[0]["ds"]) if first and every_day else None,
                   "last": last.isoformat() if last else None, "days": days},
        "days": shown, "version_changes": served_versions, "trainings": trainings,
        "quarantine": quarantined(lake, first, last), "replays": replay_evidence(lake),
    }


def render_chart_svg(health: dict[str, Any]) -> str:
    """Served ROC AUC and drift share by flight date, with the days a training started and a new version served."""
    # A Figure of its own, not pyplot: the API server draws pages in several threads at once.
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    days = health["days"]
    if not days:
        return ""
    dates = [dt.date.fromisoformat(d["ds"]) for d in days]
    first, last = dates[0], dates[-1]
    figure = Figure(figsize=(10, 5))
    auc_axis, drift_axis = figure.subplots(2, 1, sharex=True)
    served = [(dt.date.fromisoformat(d["served_through"]), d["served_auc"]) for d in days
              if d["served_auc"] is not None and d["served_through"]]
    if served:
        auc_axis.plot([x for x, _ in served], [y for _, y in served], marker=".", color="tab:blue")
    auc_axis.set_ylabel("served ROC AUC")
    drift_axis.bar(dates, [d["drift_share"] or 0.0 for d in days],
                   color=["tab:red" if d["dataset_drift"] else "tab:gray" for d in days])
    drift_axis.set_ylabel("drift share")
    for training in health["trainings"]:
        started = training.get("started_on")
        if started and first <= dt.date.fromisoformat(started) <= last:
            for axis in (auc_axis, drift_axis):
                axis.axvline(dt.date.fromisoformat(started), color="tab:orange", linestyle="--", linewidth=1)
    for change in health["version_changes"]:
        changed = dt.date.fromisoformat(change["ds"])
        if change["replaced"] is not None and first <= changed <= last:
            for axis in (auc_axis, drift_axis):
                axis.axvline(changed, color="tab:green", linewidth=1.5)
            auc_axis.annotate(f"v{change['version']}", (changed, 1.0), xycoords=("data", "axes fraction"),
                              fontsize=8, color="tab:green", va="top")
    drift_axis.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
    auc_axis.set_title("orange dashed: a training started; green: a new version served")
    figure.tight_layout()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]  # inline: without the XML prolog and doctype


def render_html(health: dict[str, Any], *, reports_url: str, api_url: str, lineage_url: str) -> str:
    """The page of /pipeline/health: report links under `reports_url`, the JSON view at `api_url`, each day's
    lineage at `lineage_url`."""
    from jobs.reports import render_page

    return render_page("health.html.j2", health=health, chart=render_chart_svg(health), reports_url=reports_url,
                       api_url=api_url, lineage_url=lineage_url, generated_at=health["generated_at"])


def _text(health: dict[str, Any]) -> str:
    lines = [f"model {health['model']}: " + ("no model yet" if not health["has_model"] else "")]
    for card in health["aliases"]:
        if card["version"]:
            holdout = card["holdout"].get("roc_auc")
            lines.append(f"  {card['alias']:<10} v{card['version']}  holdout ROC AUC "
                         f"{holdout if holdout is None else f'{holdout:.3f}'}  gate "
                         f"{ {True: 'passed', False: 'rejected'}.get(card['gate_passed'], '-') }")
        else:
            lines.append(f"  {card['alias']:<10} -")
    lines.append(f"served days {health['window']['first']}..{health['window']['last']}:")
    for day in health["days"]:
        auc = day["served_auc"]
        lines.append(f"  {day['ds']}  v{day['version']}  drift {day['drift_share'] or 0:.2f}"
                     f"{' (dataset drift)' if day['dataset_drift'] else ''}  served AUC "
                     f"{'-' if auc is None else f'{auc:.3f}'}{'  RETRAIN' if day['retrain'] else ''}")
    by_day: dict[str, int] = defaultdict(int)
    for row in health["quarantine"]:
        by_day[row["ds"]] += row["quarantined_rows"] or 0
    if by_day:
        lines.append("quarantined rows: " + ", ".join(f"{ds} {n}" for ds, n in sorted(by_day.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from jobs.registry import MlflowUnreachable
    from jobs.settings import get_settings

    parser = step_parser("jobs.health", __doc__.split("\n\n")[0].split("\n")[0], "--days 7",
                         "--days 90 --end 2013-06-30 --json > health.json")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"served days to show (1..{MAX_DAYS})")
    parser.add_argument("--end", type=dt.date.fromisoformat, help="last flight date shown (default: the newest)")
    parser.add_argument("--json", action="store_true", help="the whole view as JSON on stdout")
    args = parser.parse_args(argv)
    if not 1 <= args.days <= MAX_DAYS:
        parser.error(f"--days must be between 1 and {MAX_DAYS}, not {args.days}")
    settings = get_settings()
    try:
        health = model_health(Lake.from_settings(settings), settings, days=args.days, end=args.end)
    except MlflowUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return print_view(health, args.json, _text)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
