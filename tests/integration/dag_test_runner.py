"""Run one DAG run with Airflow's `dag.test()` and print its outcome as JSON.

Used by integration tests in a subprocess (Airflow reads its config from the
environment at import, so each test Airflow gets a fresh interpreter):

    python tests/integration/dag_test_runner.py DAG_ID LOGICAL_DATE [CONF_JSON]

The last stdout line is `DAG_TEST_RESULT {"state": ..., "run_id": ..., "tasks": {task_id: {"state", "try_number"}},
"asset_events": [{"asset", "partition_key", "extra"}]}` (the Asset events the run emitted, as the
scheduler will see them).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys


def main() -> None:
    dag_id, logical_date = sys.argv[1], dt.datetime.fromisoformat(sys.argv[2])
    if logical_date.tzinfo is None:
        logical_date = logical_date.replace(tzinfo=dt.timezone.utc)
    conf = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None

    from sqlalchemy import select

    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    dag = bag.dags[dag_id]
    run = dag.test(logical_date=logical_date, run_conf=conf)
    with create_session() as session:
        run = session.merge(run)
        tasks = {
            ti.task_id: {"state": str(ti.state.value if hasattr(ti.state, "value") else ti.state), "try_number": ti.try_number}
            for ti in run.get_task_instances(session=session)
        }
        state = str(run.state.value if hasattr(run.state, "value") else run.state)
        events = session.execute(
            select(AssetModel.name, AssetEvent.partition_key, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run.run_id)
            .order_by(AssetEvent.id)
        ).all()
        asset_events = [{"asset": name, "partition_key": key, "extra": extra} for name, key, extra in events]
    print("DAG_TEST_RESULT " + json.dumps({"state": state, "run_id": run.run_id, "tasks": tasks,
                                           "asset_events": asset_events}, default=str), flush=True)


if __name__ == "__main__":
    main()
