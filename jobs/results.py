"""How a step CLI reports back to whoever ran it: exit codes and one result line.

The same CLI runs in a terminal, as a subprocess of an Airflow worker, or in a
Kubernetes pod, so the contract is plain:
- exit 0: done; exit 3: the input was rejected (data problem: retrying cannot
  help, so the task fails without retries); exit 4: nothing to do (no champion
  to score with, no partition to read: the task is skipped, its log says why);
  exit 2: bad usage or missing input; anything else: an unexpected error
  (retried with backoff).
- one line `STEP_RESULT {json}` per result on stdout: references (URIs, counts,
  warnings), never data. In a pod, the last results also go to
  /airflow/xcom/return.json for KubernetesPodOperator's XCom sidecar, and a
  rejection message to /dev/termination-log so the pod status names the problem.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_SKIPPED = 4
SKIP_PREFIX = "SKIPPED "  # the line a skipping step prints first: the task's skip message

RESULT_PREFIX = "STEP_RESULT "
XCOM_FILE = Path(os.environ.get("PIPELINE_XCOM_FILE", "/airflow/xcom/return.json"))
TERMINATION_LOG = Path("/dev/termination-log")

_emitted: list[dict[str, Any]] = []


def emit_result(payload: dict[str, Any]) -> None:
    """Print one machine-readable result line (and keep it for the pod's XCom file)."""
    line = json.dumps(payload, default=str, sort_keys=True)
    print(f"{RESULT_PREFIX}{line}", flush=True)
    _emitted.append(json.loads(line))
    if XCOM_FILE.parent.is_dir():
        XCOM_FILE.write_text(json.dumps(_emitted))


def parse_results(output: str) -> list[dict[str, Any]]:
    """The results a step printed, in order."""
    return [json.loads(line[len(RESULT_PREFIX):]) for line in output.splitlines() if line.startswith(RESULT_PREFIX)]


def record_rejection(message: str) -> None:
    """Leave the rejection reason where Kubernetes shows it (pod status), if there."""
    if TERMINATION_LOG.exists() and os.access(TERMINATION_LOG, os.W_OK):
        TERMINATION_LOG.write_text(message[:4000])
