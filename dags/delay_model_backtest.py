"""
### delay_model_backtest

Score a model over past flight dates with the production scoring code and compare it,
day by day, with what was served (`python -m jobs.backtest`).

| task | does |
| --- | --- |
| `backtest_arguments` | the trigger form as CLI arguments (wiring only) |
| `backtest` | trains the model first when a training window is given (registered, never promoted); scores the window's days with `spark_udf` from the same features partitions as production; measures the backtest and the served predictions on the same labelled flights |

**Which model** (first that is set): a training window (`train_start` and `train_end`:
trained as `delay_model_training` trains, registered with tag `purpose=backtest`, no alias
moved; the same request again reuses it), a `version`, else the version the `alias` names
now (default `champion`).

**Which days**: `start`..`end`; left empty, the last 14 days with features and outcomes.
Days without features or outcomes are listed, not counted.

**Results** under **Browse > Pipeline reports > backtest** (`reports/backtest/{id}/`):
`backtest.html` (the table of days: ROC AUC, PR AUC, log loss and ECE, backtested and served,
flights and cancelled flights), `backtest.png` (daily ROC AUC) and `backtest.json`; the
backtest's own predictions in `predictions/` there, never in the serving zone. A rerun of
the same request replaces them.

**Bad input** fails the task at once, naming every problem (no retry): a window outside
2013, end before start, a version that does not exist, a window without outcomes or
features, a training window overlapping the backtest window. No champion yet: *skipped*.
"""
from __future__ import annotations

from airflow.sdk import DAG, Param, task

from common.config import default_args, settings, start_date
from common.params import optional_date
from common.steps import pipeline_step

DAG_ID = "delay_model_backtest"
_name, _training = settings().mlflow.model_name, settings().training


with DAG(
    dag_id=DAG_ID,
    description="Backtest a model version (or a model trained on a window) over past days against what was served.",
    doc_md=__doc__,
    schedule=None,
    start_date=start_date(),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["backtest", "mlflow", "spark", "reports"],
    params={
        "alias": Param("champion", type="string", enum=["champion", "challenger", "previous"], title="Alias",
                       description=f"Backtest the {_name} version this alias names now (unless a version or a "
                                   "training window is given)."),
        "version": Param(None, type=["null", "integer"], minimum=1, title="Model version",
                         description=f"A registered version of {_name} to backtest (overrides the alias)."),
        "start": optional_date("First flight date", "First day of the backtest window (empty: the last 14 days "
                             "with features and outcomes)."),
        "end": optional_date("Last flight date", "Last day of the backtest window (empty: 14 days from the start, "
                           "or the last labelled day)."),
        "train_start": optional_date("Training start", "Train a model on train_start..train_end first and backtest "
                                   "it (registered, never promoted). Empty: backtest a registered version."),
        "train_end": optional_date("Training end", "Last flight date of the training window (before the backtest "
                                 "window; the holdout is the days after it)."),
        "family": Param(_training.family, type="string", enum=["torch_mlp", "sklearn_hgb"], title="Model family",
                        description="Family of the model trained on a training window (ignored otherwise)."),
        "backtest_id": Param(None, type=["null", "string"], pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$",
                             title="Report id", description="Folder under reports/backtest/ (empty: from the "
                                                            "request, e.g. v3_2013-03-01_2013-03-14)."),
    },
) as dag:

    @task
    def backtest_arguments(params: dict | None = None, run_id: str | None = None) -> list[str]:
        """The trigger form as `python -m jobs.backtest` arguments (wiring only: the step checks them)."""
        params = params or {}
        if params.get("train_start") or params.get("train_end"):
            model = ["--family", params["family"]]
            model += [arg for name in ("train_start", "train_end") if params.get(name)
                      for arg in (f"--{name.replace('_', '-')}", str(params[name]))]
        elif params.get("version"):
            model = ["--version", str(params["version"])]
        else:
            model = ["--alias", params.get("alias") or "champion"]
        window = [arg for name in ("start", "end") if params.get(name) for arg in (f"--{name}", str(params[name]))]
        chosen_id = ["--id", params["backtest_id"]] if params.get("backtest_id") else []
        return [*model, *window, *chosen_id, "--reason", f"{DAG_ID} run {run_id}"]

    pipeline_step("backtest", step="backtest", arguments=backtest_arguments(),
                  doc_md="`python -m jobs.backtest`: score the window with the model, compare with what was served; "
                         "reports/backtest/{id}/.")
