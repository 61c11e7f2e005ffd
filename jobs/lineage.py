"""Lineage of a prediction: from a flight's predicted probability back to the landing files it came from.

    python -m jobs.lineage --ds 2013-03-01                       # the day's predictions partition
    python -m jobs.lineage --ds 2013-03-01 --flight UA 1545 EWR  # one flight's row, then the same chain
    python -m jobs.lineage --ds 2013-03-01 --json

The chain, each link read from what the steps recorded (partition manifests, MLflow tags):
predictions partition -> the model version that scored it (MLflow run, training set, windows) and the
features partition it read (the write it read, and whether that write is still the current one) ->
the raw partitions those features read (each write, its validation status) -> the landing file each raw
partition was published from (its sha256 then, and whether the file still has it). A link that was
replaced since is marked `replaced`, one that is gone `missing`: lineage shows what happened, it does
not assume the lake stood still.
"""
from __future__ import annotations

import hashlib
import logging
import sys
from typing import TYPE_CHECKING, Any

from jobs.cli import print_view, step_parser
from jobs.lake import Lake, PartitionNotFound

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from jobs.settings import Settings

log = logging.getLogger("jobs.lineage")


class NoLineage(LookupError):
    """The starting point (predictions of the day, or the flight) does not exist: names what was looked for."""


def _partition(lake: Lake, key: str, write_id: str | None = None) -> dict[str, Any]:
    """A partition's current write, compared with the write a consumer recorded reading."""
    try:
        manifest = lake.read_manifest(key)
    except PartitionNotFound:
        return {"key": key, "uri": lake.uri(key), "state": "missing", "write_read": write_id}
    current = manifest.get("write_id")
    state = "current" if write_id in (None, current) else "replaced"
    return {"key": key, "uri": lake.uri(key), "state": state, "write_read": write_id or current,
            "write_now": current, "rows": manifest.get("rows"), "metadata": manifest.get("metadata", {})}


def _landing(lake: Lake, raw: dict[str, Any]) -> dict[str, Any] | None:
    metadata = raw.get("metadata", {})
    key, sha256 = metadata.get("landing_key"), metadata.get("sha256")
    if not key:
        return None  # written without a landing file (e.g. a test fixture): nothing upstream to show
    if not lake.exists(key):
        return {"key": key, "uri": lake.uri(key), "sha256": sha256, "state": "missing"}
    now = hashlib.sha256(lake.read_bytes(key)).hexdigest()
    return {"key": key, "uri": lake.uri(key), "sha256": sha256, "state": "current" if now == sha256 else "changed"}


def _model(mlflow_client: "MlflowClient", lake: Lake, name: str, version: str) -> dict[str, Any]:
    from jobs.training_set import training_set_key

    registered = mlflow_client.get_model_version(name, version)
    tags = mlflow_client.get_run(registered.run_id).data.tags if registered.run_id else {}
    set_id = tags.get("training_set")
    splits = {split: _partition(lake, training_set_key(set_id, split)) for split in ("train", "holdout")} if set_id else {}
    return {"name": name, "version": version, "run_id": registered.run_id, "training_set": set_id,
            "reason": tags.get("reason", ""),
            "window": {k.removeprefix("window."): v for k, v in tags.items() if k.startswith("window.")},
            "training_set_partitions": {split: {k: v for k, v in part.items() if k != "metadata"} | {
                "rows": part.get("metadata", {}).get("rows"), "dates": len(part.get("metadata", {}).get("features", {}))}
                for split, part in splits.items()}}


def find_flight(frame: Any, carrier: str, flight: int, origin: str) -> dict[str, Any]:
    rows = frame[(frame["carrier"] == carrier) & (frame["flight"].astype(int) == int(flight)) &
                 (frame["origin"] == origin)]
    if rows.empty:
        raise NoLineage(f"no prediction for flight {carrier} {flight} from {origin} in this partition")
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in rows.iloc[0].to_dict().items()}


def lineage(lake: Lake, ds: str, *, flight: tuple[str, int, str] | None = None, settings: "Settings | None" = None,
            mlflow_client: "MlflowClient | None" = None) -> dict[str, Any]:
    """The chain for the predictions of flight date `ds` (and one flight's row when `flight` is given)."""
    from jobs.registry import client
    from jobs.score import predictions_key
    from jobs.settings import get_settings

    settings = settings or get_settings()
    key = predictions_key(ds)
    try:
        manifest = lake.read_manifest(key)
    except PartitionNotFound:
        raise NoLineage(f"no predictions for {ds} at {lake.uri(key)}: flights_batch_scoring has not written them")
    metadata = manifest.get("metadata", {})
    graph: dict[str, Any] = {"ds": ds, "predictions": _partition(lake, key)}
    graph["predictions"].pop("metadata", None)
    if flight:
        graph["flight"] = find_flight(lake.read_partition(key), *flight)
    mlflow_client = mlflow_client or client(settings.mlflow.tracking_uri)
    graph["model"] = _model(mlflow_client, lake, metadata.get("model_name") or settings.mlflow.model_name,
                            str(metadata.get("model_version")))
    features_read = metadata.get("features", {})
    features = _partition(lake, features_read.get("key", ""), features_read.get("write_id"))
    inputs = features.pop("metadata", {}).get("inputs", {})
    graph["features"] = features
    graph["raw"] = []
    for raw_key, write_id in sorted(inputs.items()):
        raw = _partition(lake, raw_key, write_id)
        raw["landing"] = _landing(lake, raw)
        raw["status"] = raw.pop("metadata", {}).get("status")
        graph["raw"].append(raw)
    return graph


def _text(graph: dict[str, Any]) -> str:
    model, features = graph["model"], graph["features"]
    lines = [f"predictions {graph['predictions']['uri']} ({graph['predictions'].get('rows')} rows, write "
             f"{graph['predictions'].get('write_now')})"]
    if "flight" in graph:
        row = graph["flight"]
        lines.append(f"  flight {row.get('carrier')} {row.get('flight')} from {row.get('origin')}: probability "
                     f"{row.get('probability')}")
    lines.append(f"  <- model {model['name']} v{model['version']} (run {model['run_id']}; {model['reason'][:120]})")
    lines.append(f"       trained on set {model['training_set']}: window {model['window']}")
    for split, part in model["training_set_partitions"].items():
        lines.append(f"       {split}: {part['uri']} [{part['state']}] {part.get('rows')} rows")
    lines.append(f"  <- features {features['uri']} [{features['state']}] write {features['write_read']}")
    for raw in graph["raw"]:
        landing = raw["landing"]
        upstream = (f" <- {landing['uri']} [{landing['state']}] sha256 {str(landing['sha256'])[:12]}" if landing
                    else " (no landing file recorded)")
        lines.append(f"       <- {raw['key']} [{raw['state']}] {raw.get('status') or ''}{upstream}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import datetime as dt

    from jobs.registry import MlflowUnreachable
    from jobs.settings import get_settings

    parser = step_parser("jobs.lineage", __doc__.split("\n\n")[0], "--ds 2013-03-01",
                         "--ds 2013-03-01 --flight UA 1545 EWR", "--ds 2013-03-01 --json")
    parser.add_argument("--ds", required=True, type=dt.date.fromisoformat, help="flight date, YYYY-MM-DD")
    parser.add_argument("--flight", nargs=3, metavar=("CARRIER", "NUMBER", "ORIGIN"),
                        help="one flight of that day, e.g. UA 1545 EWR")
    parser.add_argument("--json", action="store_true", help="the graph as JSON on stdout")
    args = parser.parse_args(argv)
    flight = None
    if args.flight:
        carrier, number, origin = args.flight
        if not number.isdigit():
            parser.error(f"--flight: the flight number must be digits, not {number!r}")
        flight = (carrier.upper(), int(number), origin.upper())
    settings = get_settings()
    try:
        graph = lineage(Lake.from_settings(settings), args.ds.isoformat(), flight=flight, settings=settings)
    except NoLineage as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except MlflowUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return print_view(graph, args.json, _text)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
