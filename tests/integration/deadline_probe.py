"""Drive flights_batch_scoring's deadline alert through Airflow's own code, as the scheduler and triggerer do.

    python tests/integration/deadline_probe.py [--create-only] PARTITION_KEY [PARTITION_KEY ...]

With the environment of tests/integration/airflow_test.py (a migrated metadata DB, the repo's
dags and plugins folders): the DAG files are parsed and written to the DB as the dag-processor
does; for each partition key a run is created as the scheduler creates an asset-triggered,
partitioned run (`create_dagrun`, which makes its Deadline rows through the plugin's
reference); then the scheduler's own query of missed deadlines picks them and `handle_miss`
queues each callback's trigger; the trigger (CallbackTrigger: the provider's SmtpNotifier) runs
as the triggerer runs it. With --create-only it stops after creating the runs (a running
scheduler and triggerer take it from there).

The last stdout line: `DEADLINE_PROBE {"runs": {key: [deadline_time, ...]}, "missed": n,
"events": [payload, ...]}`.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys


async def _run_trigger(trigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]


def main() -> None:
    from sqlalchemy import select, update

    from airflow._shared.module_loading import import_string
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.callback import Callback
    from airflow.models.dag import DagModel
    from airflow.models.deadline import Deadline
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.triggers.base import TriggerEvent
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        if bag.import_errors:
            raise SystemExit(f"import errors: {bag.import_errors}")
        sync_bag_to_db(bag, bundle.name, bundle.version)

    create_only = "--create-only" in sys.argv
    runs: dict[str, list[str]] = {}
    with create_session() as session:
        dag = SerializedDagModel.get_dag("flights_batch_scoring", session=session)
        for key in [arg for arg in sys.argv[1:] if not arg.startswith("--")]:
            run = dag.create_dagrun(
                run_id=f"asset_triggered__{key}", logical_date=None, data_interval=None,
                run_after=dt.datetime.now(dt.timezone.utc), run_type=DagRunType.ASSET_TRIGGERED,
                triggered_by=DagRunTriggeredByType.ASSET, state=DagRunState.QUEUED, partition_key=key,
                session=session,
            )
            session.flush()
            runs[key] = [d.deadline_time.isoformat()
                         for d in session.scalars(select(Deadline).where(Deadline.dagrun_id == run.id))]
        session.commit()
    if create_only:
        # Every DAG paused: a scheduler started next only handles the deadlines, it runs no task.
        with create_session() as session:
            session.execute(update(DagModel).values(is_paused=True))
        print("DEADLINE_PROBE " + json.dumps({"runs": runs}), flush=True)
        return

    # The scheduler's loop: deadlines past and not yet missed -> handle_miss queues the callback's trigger.
    with create_session() as session:
        missed = session.scalars(select(Deadline).where(Deadline.deadline_time < dt.datetime.now(dt.timezone.utc))
                                 .where(~Deadline.missed)).all()
        triggers = []
        for deadline in missed:
            deadline.handle_miss(session)
            session.flush()
            triggers.append((deadline.callback.id, deadline.callback.trigger.classpath,
                             deadline.callback.trigger.kwargs))
        session.commit()

    # The triggerer: the trigger row's class and kwargs, run to its events, which the callback records
    # (a finished callback lets go of its trigger: a triggerer started later does not run it again).
    events = []
    for callback_id, classpath, kwargs in triggers:
        payloads = asyncio.run(_run_trigger(import_string(classpath)(**kwargs)))
        with create_session() as session:
            callback = session.get(Callback, callback_id)
            for payload in payloads:
                callback.handle_event(TriggerEvent(payload), session)
        events += payloads
    print("DEADLINE_PROBE " + json.dumps({"runs": runs, "missed": len(missed), "events": events}, default=str),
          flush=True)


if __name__ == "__main__":
    main()
