"""Fixtures for the DAG tests: parse reports from fresh interpreters, DAGs per environment, real task contexts.

Layers (STYLE.md 11): test_dag_integrity.py parses every file of dags/ like the
dag-processor does; test_flights_ingest_dag.py checks the wiring, schedule and
rendered templates of flights_ingest; test_pod_step_operator.py renders the
production pods; test_subprocess_step_operator.py runs the local runner for real.

Airflow reads its configuration once, when first imported. So that these tests
neither read nor write a developer's ~/airflow (or the demo's .airflow/), airflow
is first imported here with a throwaway AIRFLOW_HOME; the variables are put back
right after so the rest of the session (integration tests build their own
environments) does not inherit them, and set again while tests/dags runs.
"""
from __future__ import annotations

import atexit
import datetime as dt
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO_ROOT / "dags"
PROBE = Path(__file__).with_name("dagbag_probe.py")
# Every top-level .py of dags/ is a DAG file to Airflow (dags/common/ is in .airflowignore):
# a new DAG is covered by the integrity tests without touching them.
DAG_FILES = sorted(DAGS_DIR.glob("*.py"))
ENVS = ("local", "production")
# Settings that come from the environment: cleared so a developer's shell cannot change the results.
SETTINGS_ENV_VARS = ("PIPELINE_ENV", "LAKE_ROOT", "MLFLOW_TRACKING_URI")
SETTINGS_OVERRIDE_PREFIX = "PIPELINE__"  # PIPELINE__SECTION__KEY overrides (jobs/settings.py)

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-dag-tests-"))
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
_AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(_AIRFLOW_HOME),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
}


def _configure_airflow_in_process() -> None:
    if "airflow" in sys.modules:  # imported before tests/dags: use the configuration it has
        return
    saved = {key: os.environ.get(key) for key in _AIRFLOW_ENV}
    os.environ.update(_AIRFLOW_ENV)
    try:
        import airflow.sdk  # noqa: F401  (reads the configuration)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_configure_airflow_in_process()


def pytest_generate_tests(metafunc) -> None:
    """`dag_path`: one test per DAG file; `runner_env`: one per PIPELINE_ENV."""
    if "dag_path" in metafunc.fixturenames:
        metafunc.parametrize("dag_path", DAG_FILES, ids=[path.stem for path in DAG_FILES])
    if "runner_env" in metafunc.fixturenames:
        metafunc.parametrize("runner_env", ENVS)


@pytest.fixture(scope="session")
def dag_files() -> list[Path]:
    return DAG_FILES


@pytest.fixture(scope="package", autouse=True)
def airflow_environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in _AIRFLOW_ENV.items():
            patch.setenv(key, value)
        for key in SETTINGS_ENV_VARS:
            patch.delenv(key, raising=False)
        for key in [k for k in os.environ if k.startswith(SETTINGS_OVERRIDE_PREFIX)]:
            patch.delenv(key)
        yield


# ---------------------------------------------------------------------------
# Layer 1: parse reports, each from a fresh interpreter (tests/dags/dagbag_probe.py)
# ---------------------------------------------------------------------------

_PARSE_TIMINGS: list[tuple[str, str, dict[str, float]]] = []
PROBE_TIMEOUT_S = 240

# A DAG file doing everything the integrity tests forbid, parsed by the same probe
# beside the real ones: proof that the probe sees what it is meant to see.
CANARY = "canary (bad on purpose)"
CANARY_DAG = '''"""A DAG file that does at parse time what DAG files must not."""
import pandas  # heavy import at the top level

from airflow.models import Variable as CoreVariable
from airflow.sdk import DAG, BaseHook, Variable

for read in (lambda: Variable.get("threshold"), lambda: BaseHook.get_connection("aws_default"),
             lambda: CoreVariable.get("threshold")):
    try:
        read()
    except Exception:
        pass  # a DAG file that hides the failure still gets caught

with DAG("canary", schedule=None):
    pass
'''


def _probe_env(env: str, home: Path) -> dict[str, str]:
    # No PYTHONPATH: as in a dag-processor, only the dags folder is on sys.path,
    # and the DAG files must find jobs/ themselves (dags/common/config.py does).
    environ = {
        key: value for key, value in os.environ.items()
        if key not in (*SETTINGS_ENV_VARS, "PYTHONPATH") and not key.startswith(SETTINGS_OVERRIDE_PREFIX)
    }
    environ.update(_AIRFLOW_ENV)
    environ.update({"AIRFLOW_HOME": str(home), "PIPELINE_ENV": env})
    return environ


@pytest.fixture(scope="session")
def parse_reports(tmp_path_factory) -> dict[tuple[str, str], dict[str, Any]]:
    """{(target, env): report}; target is a DAG file name or "dags/" for the whole folder.

    Each DAG file is parsed alone with the local runner, so that what it imports
    and reads is its own; the whole folder is parsed once more with the
    production runner (pods), as a production dag-processor sees it. All probes
    start at once: the cost is about one interpreter start, not N.
    """
    root = tmp_path_factory.mktemp("parse")
    canary_dir = root / "canary_dags"
    canary_dir.mkdir()
    (canary_dir / "canary.py").write_text(CANARY_DAG)
    runs = [(path.name, "local", path, DAGS_DIR) for path in DAG_FILES]
    runs.append(("dags/", "production", DAGS_DIR, DAGS_DIR))
    runs.append((CANARY, "local", canary_dir / "canary.py", canary_dir))
    started = []
    for index, (target, env, path, bundle) in enumerate(runs):
        home = root / f"home-{index}"
        home.mkdir()
        report = root / f"report-{index}.json"
        process = subprocess.Popen(
            [sys.executable, str(PROBE), str(path), str(bundle), str(report)],
            cwd=home, env=_probe_env(env, home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        started.append((target, env, process, report, time.monotonic()))
    reports, failures = {}, []
    for target, env, process, report, start in started:
        try:
            output, _ = process.communicate(timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        wall = time.monotonic() - start
        if process.returncode != 0 or not report.exists():
            failures.append(f"DagBag probe for {target} ({env}) exited {process.returncode}:\n{output[-6000:]}")
            continue
        result = json.loads(report.read_text())
        result["output"] = output[-6000:]
        reports[(target, env)] = result
        _PARSE_TIMINGS.append((target, env, {
            "fill": result["fill_s"], "fill_cpu": result["fill_cpu_s"], "serialize": result["serialize_s"],
            "interpreter": wall,
        }))
    if failures:
        pytest.fail("\n\n".join(failures))
    return reports


def pytest_terminal_summary(terminalreporter) -> None:
    if not _PARSE_TIMINGS:
        return
    terminalreporter.section("DagBag fill times (fresh interpreter per parse)")
    for target, env, timing in sorted(_PARSE_TIMINGS):
        if target == CANARY:
            continue
        terminalreporter.write_line(
            f"{target:<24} {env:<11} fill {timing['fill']:.3f}s (cpu {timing['fill_cpu']:.3f}s)"
            f"  serialize {timing['serialize']:.3f}s  (interpreter done within {timing['interpreter']:.1f}s)"
        )


# ---------------------------------------------------------------------------
# Layers 2-4: DAGs loaded in this process for one environment, real task contexts
# ---------------------------------------------------------------------------

_module_counter = itertools.count()


@pytest.fixture
def load_dag_module(monkeypatch) -> Callable[..., Any]:
    """Execute a DAG file afresh with PIPELINE_ENV=env (and any other variables) and return the module.

    Settings are read when the file runs (jobs.settings caches per environment
    value), so the same file yields the subprocess runner or the pod runner.
    Each call runs the file under a new module name, as the dag-processor gives
    each parse its own, and leaves nothing in sys.modules.
    """
    monkeypatch.syspath_prepend(str(DAGS_DIR))

    def load(dag_id: str, env: str = "local", **environ: str) -> Any:
        monkeypatch.setenv("PIPELINE_ENV", env)
        for key, value in environ.items():
            monkeypatch.setenv(key, value)
        path = DAGS_DIR / f"{dag_id}.py"
        spec = importlib.util.spec_from_file_location(f"_dag_under_test_{next(_module_counter)}_{dag_id}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def load_dag(load_dag_module) -> Callable[..., Any]:
    """Like load_dag_module, but returns the file's one DAG (whose dag_id is the file stem)."""

    def load(dag_id: str, env: str = "local", **environ: str) -> Any:
        from airflow.sdk import DAG

        module = load_dag_module(dag_id, env, **environ)
        dags = {value.dag_id: value for value in vars(module).values() if isinstance(value, DAG)}
        assert list(dags) == [dag_id], f"{module.__file__} defines {sorted(dags)}"
        return dags[dag_id]

    return load


def scheduler_dag(dag: Any) -> Any:
    """The DAG as the scheduler sees it: serialized and read back (the core timetable, not the SDK's)."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def make_dag_run(dag: Any, logical_date: dt.datetime) -> Any:
    """The DagRun the API server hands a worker for the scheduled run at `logical_date`.

    Its dates come from the DAG's timetable, computed by the scheduler's own code.
    """
    from airflow.sdk.api.datamodels._generated import DagRun, DagRunState, DagRunType
    from airflow.timetables.base import TimeRestriction

    info = scheduler_dag(dag).timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=logical_date, latest=logical_date, catchup=True),
    )
    assert info is not None and info.logical_date == logical_date, f"{logical_date} is not a scheduled run"
    return DagRun(
        dag_id=dag.dag_id,
        run_id=f"scheduled__{logical_date.isoformat()}",
        logical_date=info.logical_date,
        data_interval_start=info.data_interval.start,
        data_interval_end=info.data_interval.end,
        run_after=info.run_after,
        start_date=info.run_after,
        end_date=None,
        run_type=DagRunType.SCHEDULED,
        state=DagRunState.RUNNING,
        consumed_asset_events=[],
        partition_key=None,
    )


@pytest.fixture
def runtime_ti() -> Callable[..., tuple[Any, dict[str, Any]]]:
    """A worker-side task instance for a task of a DAG run at a logical date, templates rendered.

    Built the way airflow.sdk.execution_time.task_runner builds one from the API
    server's StartupDetails (RuntimeTaskInstance.model_construct over a validated
    TaskInstance + TIRunContext), then rendered as `_prepare` does: a copy of the
    task from `prepare_for_execution()`, `ti.render_templates()` with the DAG's
    Jinja environment. No database, no API server: the context is Airflow's own
    (`ds`, `macros`, `outlet_events`, ...), not a hand-made dict.
    """
    from airflow.dag_processing.bundles.local import LocalDagBundle
    from airflow.sdk.api.datamodels._generated import TaskInstance, TaskInstanceState, TIRunContext
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    def build(dag: Any, task_id: str, logical_date: dt.datetime, try_number: int = 1):
        task = dag.get_task(task_id)
        run = make_dag_run(dag, logical_date)
        base = TaskInstance(
            id=uuid.uuid4(), task_id=task_id, dag_id=dag.dag_id, run_id=run.run_id,
            try_number=try_number, dag_version_id=uuid.uuid4(),
        )
        ti = RuntimeTaskInstance.model_construct(
            **base.model_dump(exclude_unset=True),
            task=task.prepare_for_execution(),
            bundle_instance=LocalDagBundle(name="dags-folder", path=str(DAGS_DIR)),
            _ti_context_from_server=TIRunContext(dag_run=run, max_tries=task.retries),
            max_tries=task.retries,
            start_date=logical_date,
            state=TaskInstanceState.RUNNING,
        )
        context = ti.get_template_context()
        ti.render_templates(context=context, jinja_env=dag.get_template_env())
        context["task"] = ti.task
        return ti, context

    return build
