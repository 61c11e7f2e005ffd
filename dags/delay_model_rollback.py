"""
### delay_model_rollback

One trigger to put the previous model back in service: the `champion` alias of
`flight_delay` moves to the `previous` version, and `previous` to the version
rolled back from (so a second rollback undoes the first). The reason is recorded
on both versions in the MLflow registry (`rollback_reason`, `rolled_back_at`).

Fails, changing nothing, when there is no `previous` version. Scoring picks the
restored champion up at its next run (it resolves `models:/flight_delay@champion`
at start).
"""
from __future__ import annotations

from airflow.sdk import DAG, Param

from common.config import default_args, settings, start_date
from common.notify import task_callback
from common.steps import pipeline_step

DAG_ID = "delay_model_rollback"

with DAG(
    dag_id=DAG_ID,
    description="Move the champion alias back to the previous model version, recording why.",
    doc_md=__doc__,
    schedule=None,
    start_date=start_date(),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["training", "mlflow", "operations"],
    params={
        "reason": Param("rolled back by hand from the Airflow UI", type="string", minLength=5, maxLength=2000,
                        title="Reason",
                        description=f"Why {settings().mlflow.model_name}'s champion is rolled back: recorded on both "
                                    "versions in MLflow with this run's id. Say what went wrong if you know."),
    },
) as dag:
    pipeline_step("rollback", step="registry",
                  arguments=["rollback", "--reason", "{{ params.reason }} (airflow run {{ run_id }})"],
                  on_success_callback=task_callback("rolled_back"),
                  doc_md="`python -m jobs.registry rollback`: champion -> previous.")
