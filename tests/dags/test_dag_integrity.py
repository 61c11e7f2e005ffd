"""Layer 1: every DAG file parses like the dag-processor parses it, cheaply, and carries the standard header.

Parametrized over every top-level file of dags/ (conftest.DAG_FILES), so a new DAG
is held to the same rules without touching this file. The parse itself runs in
fresh interpreters (dagbag_probe.py); these tests read its reports.

Sensors are not exempt from the retry rule: a sensor's timeout is final in Airflow
(AirflowSensorTimeout is never retried), so retries only ever cover a poke that
crashed on a transient error (an S3 hiccup), which is what they are for.
"""
from __future__ import annotations

import ast
import datetime as dt
import re
from pathlib import Path

import pytest

# A DAG that only wires parses in a fraction of a second; Airflow's own limit
# (core.dagbag_import_timeout, 30 s) is for emergencies, not a budget. CPU time,
# so that a busy test machine does not fail the test.
PARSE_BUDGET_CPU_S = 2.0
MIN_DOC_CHARS = 200


def _file_report(parse_reports, path: Path) -> dict:
    return parse_reports[(path.name, "local")]


def _dag(report: dict, path: Path) -> dict:
    dags = report["dags"]
    assert path.stem in dags, f"{path.name} defines {sorted(dags)}, expected dag_id {path.stem!r}"
    return dags[path.stem]


def test_there_are_dag_files(dag_files):
    assert dag_files, "no DAG files in dags/"


def test_the_probe_catches_a_bad_dag_file(parse_reports):
    """The canary (conftest.CANARY_DAG) reads secrets and imports pandas at parse: all of it is seen."""
    report = next(report for (target, _), report in parse_reports.items() if target.startswith("canary"))
    assert report["import_errors"] == {} and list(report["dags"]) == ["canary"]
    assert report["heavy_modules"] == ["pandas"]
    calls = [read["call"] for read in report["secret_reads"]]
    assert len(calls) == 3, calls
    assert any(call.endswith("Variable.get") for call in calls)
    assert any(call.endswith("BaseHook.get_connection") for call in calls)


def test_imports_without_errors(parse_reports, dag_path):
    report = _file_report(parse_reports, dag_path)
    assert report["import_errors"] == {}, "\n".join(report["import_errors"].values())
    assert report["serialization_errors"] == {}, "\n".join(report["serialization_errors"].values())
    assert report["dags"], f"{dag_path.name} defines no DAG"


def test_whole_folder_parses_with_the_production_runner(parse_reports, dag_files):
    """The pod runner's settings give a parseable folder too; .airflowignore keeps dags/common/ out."""
    report = parse_reports[("dags/", "production")]
    assert report["import_errors"] == {}, "\n".join(report["import_errors"].values())
    assert report["serialization_errors"] == {}, "\n".join(report["serialization_errors"].values())
    assert report["files_parsed"] == sorted(path.name for path in dag_files)
    assert sorted(report["dags"]) == sorted(path.stem for path in dag_files), "one DAG per file, id = file stem"
    assert report["captured_warnings"] == {}


def test_parse_is_fast(parse_reports, dag_path):
    report = _file_report(parse_reports, dag_path)
    assert report["fill_cpu_s"] < PARSE_BUDGET_CPU_S, (
        f"{dag_path.name} took {report['fill_cpu_s']:.2f}s of CPU to parse: move work out of the top level"
    )


def test_no_heavy_import_at_parse(parse_reports, dag_path):
    report = _file_report(parse_reports, dag_path)
    assert report["heavy_modules"] == [], (
        f"{dag_path.name} imports {report['heavy_modules']} at parse time: import them inside the task"
    )


def test_local_runner_does_not_import_kubernetes(parse_reports, dag_path):
    """The pod operator module is imported only when settings choose the kubernetes runner."""
    assert not _file_report(parse_reports, dag_path)["kubernetes_imported"]


def test_no_heavy_import_at_parse_with_the_production_runner(parse_reports):
    assert parse_reports[("dags/", "production")]["heavy_modules"] == []


def test_no_variable_or_connection_read_at_parse(parse_reports, dag_path):
    report = _file_report(parse_reports, dag_path)
    assert len(report["guarded"]) >= 3, f"the probe guarded too little: {report['guarded']}"
    assert report["secret_reads"] == [], report["secret_reads"]


def test_no_variable_or_connection_read_at_parse_with_the_production_runner(parse_reports):
    assert parse_reports[("dags/", "production")]["secret_reads"] == []


def test_dag_id_is_the_file_stem(parse_reports, dag_path):
    assert sorted(_file_report(parse_reports, dag_path)["dags"]) == [dag_path.stem]


def test_has_tags_and_docs(parse_reports, dag_path):
    dag = _dag(_file_report(parse_reports, dag_path), dag_path)
    assert dag["tags"], "tags make the DAG findable in the UI"
    doc = (dag["doc_md"] or "").strip()
    assert len(doc) >= MIN_DOC_CHARS and doc.count("\n") >= 3, f"doc_md is too thin: {doc!r}"
    docstring = ast.get_docstring(ast.parse(dag_path.read_text()))
    assert docstring and docstring.strip() in doc, "doc_md comes from the module docstring"
    assert dag["description"], "description shows in the DAG list"


def test_owner_is_not_the_default(parse_reports, dag_path):
    dag = _dag(_file_report(parse_reports, dag_path), dag_path)
    owners = {task["owner"] for task in dag["tasks"]}
    assert owners and "airflow" not in owners, owners


def test_start_date_is_static_and_timezone_aware(parse_reports, dag_path):
    local = _dag(_file_report(parse_reports, dag_path), dag_path)
    production = _dag(parse_reports[("dags/", "production")], dag_path)
    assert local["start_date"] is not None
    assert local["start_date_utcoffset_s"] is not None, "naive start_date: give it a timezone"
    # Parsed in two interpreters at two moments and under two runners: a start_date
    # computed from now() or from the environment would differ.
    assert local["start_date"] == production["start_date"]
    source = dag_path.read_text()
    assert not re.search(r"\b(days_ago|utcnow)\b|\bnow\(", source), "start_date must not move with the clock"
    for task in local["tasks"]:
        assert task["start_date"] in (None, local["start_date"]), task["task_id"]
    if local["end_date"]:
        assert dt.datetime.fromisoformat(local["end_date"]) >= dt.datetime.fromisoformat(local["start_date"])


def _dag_call_keywords(path) -> set[str]:
    """The keyword arguments of the file's `DAG(...)` constructor call(s), from its syntax tree."""
    import ast

    calls = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)
             and getattr(node.func, "id", getattr(node.func, "attr", None)) == "DAG"]
    assert calls, f"{path.name}: no DAG(...) call"
    return set.intersection(*({k.arg for k in call.keywords} for call in calls))


def test_catchup_and_max_active_runs_are_set_on_purpose(parse_reports, dag_path):
    """Not left to `[scheduler] catchup_by_default` (STYLE.md 10): the constructor names both."""
    keywords = _dag_call_keywords(dag_path)
    assert {"catchup", "max_active_runs"} <= keywords, f"set explicitly: {sorted({'catchup', 'max_active_runs'} - keywords)}"
    dag = _dag(_file_report(parse_reports, dag_path), dag_path)
    assert isinstance(dag["catchup"], bool)
    assert dag["max_active_runs"] >= 1


def test_every_task_retries_with_exponential_backoff(parse_reports, dag_path, runner_env):
    report = parse_reports[(dag_path.name, "local") if runner_env == "local" else ("dags/", "production")]
    dag = _dag(report, dag_path)
    assert dag["tasks"], "a DAG with no task"
    for task in dag["tasks"]:
        assert task["retries"] >= 1, f"{task['task_id']} ({task['operator']}) has no retries"
        assert task["retry_exponential_backoff"], f"{task['task_id']} retries without backoff"
        assert task["retry_delay_s"] and task["retry_delay_s"] > 0, task["task_id"]


def test_params_are_typed_and_described(parse_reports, dag_path):
    """The trigger form is the user's interface (STYLE.md 4): every Param has a type and a description."""
    dag = _dag(_file_report(parse_reports, dag_path), dag_path)
    for name, param in dag["params"].items():
        assert param["description"], f"Param {name!r} has no description"
        schema = param["schema"] or {}
        assert schema.get("type") or schema.get("enum") or schema.get("anyOf"), f"Param {name!r} has no type"


BAD_DATES = ["2014-01-01", "2012-12-31", "2013-13-01", "2013-02-30x", "../../etc/passwd", "2013-1-1", "'; DROP"]


@pytest.mark.parametrize("dag_id", ["delay_model_training", "delay_model_backtest", "replay_publisher"])
def test_trigger_forms_refuse_dates_outside_the_data_and_accept_their_defaults(load_dag, dag_id):
    """What the form and `POST /dagRuns` check (the Params' JSON schema) before any task runs."""
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    dag = load_dag(dag_id)
    dag.params.validate()  # the defaults as the form opens
    dates = [name for name, param in dag.params.items() if param.schema.get("format") == "date" and
             "pattern" in param.schema]
    assert dates, f"{dag_id} has no flight-date field"
    for name in dates:
        for bad in BAD_DATES:
            params = ParamsDict(dag.params)
            with pytest.raises(ParamValidationError, match=name):
                params[name] = bad
                params.validate()
        params = ParamsDict(dag.params)
        params[name] = "2013-06-30"
        params.validate()
