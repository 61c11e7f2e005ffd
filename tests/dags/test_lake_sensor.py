"""LakeObjectSensor pokes once, then waits in the triggerer (plugins/lake_triggers.py): the trigger
serializes to a class path the triggerer can import, fires when the object lands, and times out
into the sensor's own outcome (failed, or skipped with soft_fail)."""
from __future__ import annotations

import asyncio
import importlib
import threading
import time

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException, TaskDeferred

from jobs.lake import Lake


@pytest.fixture
def lake(tmp_path, monkeypatch):
    lake = Lake(str(tmp_path / "lake"))
    monkeypatch.setenv("LAKE_ROOT", lake.root)
    return lake


def _sensor(**kwargs):
    from common.sensors import LakeObjectSensor

    kwargs = {"key": "landing/schedule/2013-01-05.csv", "timeout": 5, **kwargs}
    return LakeObjectSensor(task_id="wait", flight_date="2013-01-05", poke_interval=0.05, **kwargs)


def test_an_object_already_there_costs_one_poke(lake):
    lake.write_bytes("landing/schedule/2013-01-05.csv", b"x\n1\n")
    assert _sensor().execute({}) is None


def test_a_missing_object_defers_to_an_importable_trigger_that_fires_when_it_lands(lake):
    with pytest.raises(TaskDeferred) as deferred:
        _sensor().execute({})
    trigger = deferred.value.trigger
    assert deferred.value.method_name == "execute_complete"
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)  # what the triggerer does
    assert kwargs["lake_root"] == lake.root and kwargs["key"] == "landing/schedule/2013-01-05.csv"

    threading.Timer(0.3, lambda: lake.write_bytes("landing/schedule/2013-01-05.csv", b"x\n1\n")).start()

    async def first_event():
        return await rebuilt.run().__anext__()

    event = asyncio.run(first_event())
    assert event.payload["status"] == "found" and event.payload["waited_s"] >= 0.2
    assert _sensor().execute_complete({}, event.payload) is None


def test_a_partition_is_found_by_its_manifest_only(lake):
    import pandas as pd

    from lake_triggers import LakeObjectTrigger

    trigger = LakeObjectTrigger(lake_root=lake.root, key="raw/schedule/date=2013-01-05", partition=True,
                                poke_interval=0.05, deadline=time.time() + 0.3)
    lake.write_bytes("raw/schedule/date=2013-01-05/part-0.parquet", b"not committed")
    assert asyncio.run(trigger.run().__anext__()).payload["status"] == "timeout"
    lake.write_partition("raw/schedule/date=2013-01-05", pd.DataFrame({"x": [1]}))
    assert asyncio.run(trigger.run().__anext__()).payload["status"] == "found"


def test_a_timeout_fails_or_skips_with_soft_fail(lake):
    event = {"status": "timeout", "uri": f"{lake.root}/landing/schedule/2013-01-05.csv", "waited_s": 5.0}
    with pytest.raises(AirflowSensorTimeout, match="did not appear within 5 s"):
        _sensor().execute_complete({}, event)
    with pytest.raises(AirflowSkipException, match="did not appear within 5 s"):
        _sensor(soft_fail=True).execute_complete({}, event)


def test_a_date_outside_the_source_skips_before_waiting(lake):
    from common.sensors import LakeObjectSensor

    sensor = LakeObjectSensor(task_id="wait", key="landing/schedule/2014-01-01.csv", flight_date="2014-01-01")
    with pytest.raises(AirflowSkipException, match="outside the source"):
        sensor.execute({})


def _started_in_the_triggerer(lake, **kwargs):
    """The trigger a sensor with start_from_trigger hands the scheduler, built as the triggerer builds it."""
    from lake_triggers import LakeObjectTrigger

    sensor = _sensor(start_from_trigger=True, **kwargs)
    args = sensor.start_trigger_args
    from lake_triggers import CLASSPATH

    assert sensor.start_from_trigger and args.trigger_cls == CLASSPATH
    assert args.next_method == "execute_complete" and args.trigger_kwargs["lake_root"] == lake.root
    return LakeObjectTrigger(**args.trigger_kwargs)


def _first_event(trigger):
    async def first():
        return await trigger.run().__anext__()

    return asyncio.run(first())


def test_a_sensor_started_in_the_triggerer_ends_there(lake):
    from airflow.triggers.base import TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent

    lake.write_bytes("landing/schedule/2013-01-05.csv", b"x\n1\n")
    assert isinstance(_first_event(_started_in_the_triggerer(lake)), TaskSuccessEvent)
    missing = dict(key="landing/weather/2013-01-05.csv", timeout=0.2)
    assert isinstance(_first_event(_started_in_the_triggerer(lake, **missing)), TaskFailedEvent)
    assert isinstance(_first_event(_started_in_the_triggerer(lake, soft_fail=True, **missing)), TaskSkippedEvent)


def test_the_triggerer_renders_the_key_and_skips_a_date_outside_the_source(lake):
    from airflow.triggers.base import TaskSkippedEvent

    sensor = _sensor(start_from_trigger=True)
    templated = dict(sensor.start_trigger_args.trigger_kwargs, key="landing/schedule/{{ ds }}.csv",
                     flight_date="{{ ds }}")
    from lake_triggers import LakeObjectTrigger

    trigger = LakeObjectTrigger(**templated)
    # What the triggerer does with the operator's template fields that are also trigger kwargs (Airflow 3.3).
    trigger.template_fields = tuple(f for f in sensor.template_fields if f in templated)
    assert set(trigger.template_fields) == {"key", "flight_date"}
    trigger.render_template_fields({"ds": "2014-01-02"})
    assert (trigger.key, trigger.flight_date) == ("landing/schedule/2014-01-02.csv", "2014-01-02")
    assert isinstance(_first_event(trigger), TaskSkippedEvent)


def test_a_stack_that_was_down_resumes_the_wait_instead_of_timing_out(lake):
    """The deferred trigger is rebuilt from its kwargs when the triggerer starts again: its timeout counts from there."""
    from lake_triggers import LakeObjectTrigger

    with pytest.raises(TaskDeferred) as deferred:
        _sensor(timeout=0.5).execute({})
    classpath, kwargs = deferred.value.trigger.serialize()
    assert kwargs["timeout_s"] == 0.5 and kwargs["deadline"] is None
    time.sleep(0.7)  # the stack is down longer than the timeout
    threading.Timer(0.2, lambda: lake.write_bytes("landing/schedule/2013-01-05.csv", b"x\n1\n")).start()
    assert _first_event(LakeObjectTrigger(**kwargs)).payload["status"] == "found"
