"""Fill a DagBag the way Airflow's dag-processor does, in a fresh interpreter, and report as JSON.

    python tests/dags/dagbag_probe.py <dag file or dags folder> <dags folder> <report.json>

Run by tests/dags/conftest.py with a throwaway AIRFLOW_HOME, so `sys.modules` holds
only what Airflow and the parsed files imported. Before the fill, every way of
reading an Airflow Variable or Connection is replaced by a function that records
the call and raises: a DAG file that reads one at parse time hits the metadata DB
or the secrets backend on every parse (every 30 s, per file) and cannot be parsed
where that backend is out of reach.

The fill and the serialization mirror `airflow.dag_processing.processor`: a
`BundleDagBag` with the dags folder as bundle path (which puts it on sys.path, as
the dag-processor does), then `DagSerialization.to_dict` per DAG (a DAG that
fails to serialize is an import error in the UI).
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# Heavy libraries that belong inside tasks (STYLE.md 1). kubernetes is reported
# apart: the production runner needs it at parse time, the local runner must not.
HEAVY_MODULES = ("torch", "pyspark", "mlflow", "evidently", "great_expectations", "sklearn", "pandas")


def _top_level(modules) -> set[str]:
    return {name.partition(".")[0] for name in modules}


def guard_secret_reads(calls: list[dict[str, Any]]) -> list[str]:
    """Make every Variable/Connection read record itself and fail; returns what was guarded."""
    import airflow.sdk

    targets: list[tuple[type, str]] = [
        (airflow.sdk.Variable, "get"),
        (airflow.sdk.Connection, "get"),
        (airflow.sdk.BaseHook, "get_connection"),
    ]
    try:  # the core models: what Airflow 2-style DAG files reach for
        from airflow.models import Connection as CoreConnection, Variable as CoreVariable
    except ImportError:
        pass
    else:
        # The deprecated core models on purpose: a DAG file written for Airflow 2 reaches for them.
        targets += [(CoreVariable, "get"), (CoreConnection, "get_connection_from_secrets")]  # noqa: AIR311

    guarded = []
    for owner, name in targets:
        if not hasattr(owner, name):
            continue
        label = f"{owner.__module__}.{owner.__qualname__}.{name}"

        def refuse(*args: Any, _label: str = label, **kwargs: Any) -> Any:
            where = traceback.extract_stack(limit=8)[:-1]
            calls.append({
                "call": _label,
                "args": [repr(arg) for arg in args],
                "kwargs": {key: repr(value) for key, value in kwargs.items()},
                "from": [f"{frame.filename}:{frame.lineno}" for frame in where],
            })
            raise RuntimeError(f"{_label} called while parsing DAG files")

        setattr(owner, name, staticmethod(refuse))
        guarded.append(label)
    return guarded


def dag_facts(dag: Any) -> dict[str, Any]:
    from airflow.sdk import BaseSensorOperator

    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    timetable = dag.timetable
    params = {}
    for key in dag.params:
        param = dag.params.get_param(key)
        params[key] = {"description": param.description, "schema": param.schema}
    return {
        "dag_id": dag.dag_id,
        "fileloc": dag.fileloc,
        "tags": sorted(dag.tags),
        "doc_md": dag.doc_md,
        "description": dag.description,
        "start_date": iso(dag.start_date),
        "start_date_utcoffset_s": (
            dag.start_date.utcoffset().total_seconds()
            if dag.start_date is not None and dag.start_date.utcoffset() is not None else None
        ),
        "end_date": iso(dag.end_date),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "timetable": {
            "type": f"{type(timetable).__module__}.{type(timetable).__qualname__}",
            "summary": getattr(timetable, "summary", None),
            "expression": getattr(timetable, "expression", None),
            "timezone": str(getattr(timetable, "timezone", "")) or None,
        },
        "params": params,
        "tasks": [
            {
                "task_id": task.task_id,
                "operator": f"{type(task).__module__}.{type(task).__qualname__}",
                "is_sensor": isinstance(task, BaseSensorOperator),
                "owner": task.owner,
                "retries": task.retries,
                "retry_exponential_backoff": task.retry_exponential_backoff,
                "retry_delay_s": task.retry_delay.total_seconds() if task.retry_delay is not None else None,
                "start_date": iso(task.start_date),
                "doc_md": task.doc_md,
            }
            for task in dag.tasks
        ],
    }


def main(target: str, bundle: str, report_path: str) -> None:
    started = time.monotonic()
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.serialization.serialized_objects import DagSerialization

    secret_reads: list[dict[str, Any]] = []
    guarded = guard_secret_reads(secret_reads)
    imported_s = time.monotonic() - started

    modules_before = set(sys.modules)
    fill_started, fill_cpu_started = time.monotonic(), time.process_time()
    bag = BundleDagBag(
        dag_folder=target, bundle_path=Path(bundle), bundle_name="dags-folder", load_op_links=False
    )
    fill_s, fill_cpu_s = time.monotonic() - fill_started, time.process_time() - fill_cpu_started
    new_modules = set(sys.modules) - modules_before

    serialization_errors = {}
    serialize_started = time.monotonic()
    for dag_id, dag in bag.dags.items():
        try:
            DagSerialization.to_dict(dag)
        except Exception:
            serialization_errors[dag_id] = traceback.format_exc()
    serialize_s = time.monotonic() - serialize_started

    loaded = _top_level(sys.modules)
    report = {
        "target": target,
        "airflow_import_s": imported_s,
        "fill_s": fill_s,
        "fill_cpu_s": fill_cpu_s,
        "serialize_s": serialize_s,
        "files_parsed": sorted(str(Path(path).relative_to(bundle)) for path in bag.file_last_changed),
        "import_errors": bag.import_errors,
        "serialization_errors": serialization_errors,
        "captured_warnings": {path: list(warnings) for path, warnings in bag.captured_warnings.items()},
        "guarded": guarded,
        "secret_reads": secret_reads,
        "heavy_modules": sorted(loaded & set(HEAVY_MODULES)),
        "kubernetes_imported": "kubernetes" in loaded,
        "modules_imported_by_parse": sorted(_top_level(new_modules)),
        "dags": {dag_id: dag_facts(dag) for dag_id, dag in bag.dags.items()},
    }
    Path(report_path).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:4])
