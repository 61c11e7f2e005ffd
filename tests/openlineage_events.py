"""The OpenLineage events Airflow's provider wrote with the file transport (one JSON file an event), as the
edges of a lineage graph: (input dataset, task) and (task, output dataset) of every completed task."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Dataset = tuple[str, str]  # (namespace, name)


def read_events(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(folder.glob("event*"))]


def completed_tasks(events: list[dict[str, Any]]) -> dict[str, dict[str, list[Dataset]]]:
    """job name ("dag_id.task_id") -> its inputs and outputs, over every COMPLETE event of that task."""
    tasks: dict[str, dict[str, list[Dataset]]] = {}
    for event in events:
        if event.get("eventType") != "COMPLETE" or "." not in event["job"]["name"]:
            continue
        task = tasks.setdefault(event["job"]["name"], {"inputs": [], "outputs": []})
        for side in ("inputs", "outputs"):
            for dataset in event.get(side) or ():
                if (dataset["namespace"], dataset["name"]) not in task[side]:
                    task[side].append((dataset["namespace"], dataset["name"]))
    return tasks


def edges(events: list[dict[str, Any]]) -> set[tuple[Dataset, Dataset]]:
    """(input, output) pairs: a task that read the input wrote the output."""
    return {(read, wrote) for task in completed_tasks(events).values()
            for read in task["inputs"] for wrote in task["outputs"]}
