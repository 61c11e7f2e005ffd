"""Operators that run one pipeline step (`python -m jobs.<step> ...`) in either runner.

All share the contract of jobs/results.py: exit 3 means the step rejected its
input, which no retry can fix, so the task fails at once (StepRejected is an
AirflowFailException); exit 4 means there was nothing to do, and the task is
skipped with the step's reason; other failures retry with backoff. Each `STEP_RESULT`
line becomes part of the task's XCom (references only) and, through
`asset_events`, an Asset event with the flight date as its partition key.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from airflow.sdk import Asset, BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from common.config import REPO_ROOT
from jobs.results import EXIT_REJECTED, EXIT_SKIPPED, SKIP_PREFIX, parse_results
from jobs.warm import WARM_SOCKET_ENV, WarmRunnerUnavailable, kill_step, run_step

# (asset, partition key, extra) for one step result; None: no event for it.
AssetEventFn = Callable[[dict[str, Any]], "tuple[Asset, str, dict[str, Any]] | None"]


_LEVELS = {"WARNING": logging.WARNING, "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL}


class StepRejected(AirflowFailException):
    """The step rejected its input (a data problem): fail now, do not retry."""


def raise_for_exit_code(step: str, code: int | None, message: str) -> None:
    """The task outcome of a step's exit code that is not a plain failure: rejected (no retry) or skipped."""
    if code == EXIT_REJECTED:
        raise StepRejected(f"jobs.{step} rejected its input:\n{message}")
    if code == EXIT_SKIPPED:
        raise AirflowSkipException(f"jobs.{step}: nothing to do: {message}")


class StepResultsMixin:
    """Turns a step's results into XCom references and Asset events."""

    asset_events: AssetEventFn | None
    _step_results: list[dict[str, Any]] | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """What the step read and wrote, for Airflow's OpenLineage provider: the graph `python -m jobs.lineage`
        walks, from the step's results and the manifests of its writes (jobs/lineage_events.py)."""
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        from jobs.lake import Lake
        from jobs.lineage_events import step_lineage
        from jobs.settings import get_settings

        settings = get_settings()
        lineage = step_lineage(self._step_results or [], Lake.from_settings(settings), settings.mlflow.tracking_uri,
                               settings.mlflow.model_name)
        return OperatorLineage(inputs=[Dataset(namespace=ns, name=name) for ns, name in lineage.inputs],
                               outputs=[Dataset(namespace=ns, name=name) for ns, name in lineage.outputs])

    def publish_results(self, context: Any, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One Asset event per partition key. Airflow gives a task one `extra` per asset, shared by
        all its partition keys: a result's own extra when it is alone, else
        `{"partitions": {key: extra}, "warnings": [...]}` (a range run of the features step)."""
        self._step_results = results
        if self.asset_events is None:
            return results
        by_asset: dict[Any, list[tuple[str, dict[str, Any]]]] = {}
        for result in results:
            event = self.asset_events(result)
            if event is None:
                continue
            asset, partition_key, extra = event
            by_asset.setdefault(asset, []).append((partition_key, extra))
            for warning in extra.get("warnings") or ():
                self.log.warning("%s %s: %s", asset.name, partition_key, warning)  # type: ignore[attr-defined]
        if not by_asset:
            # A successful task emits an event for each outlet; nothing new must not wake consumers.
            raise AirflowSkipException(
                f"nothing new to publish ({len(results)} result(s), none changed): no Asset event")
        for asset, events in by_asset.items():
            accessor = context["outlet_events"][asset]
            accessor.add_partitions([key for key, _ in events])
            if len(events) == 1:
                accessor.extra = events[0][1]
            else:
                accessor.extra = {
                    "partitions": {key: {k: v for k, v in extra.items() if k != "warnings"} for key, extra in events},
                    "warnings": [w for _, extra in events for w in extra.get("warnings") or ()],
                }
        return results


class SubprocessStepOperator(StepResultsMixin, BaseOperator):
    """Run a step as `python -m jobs.<step>` beside the worker (the `local` runner).

    When PIPELINE_WARM_SOCKET names a warm runner that answers (the local stack starts one,
    jobs/warm.py), the step runs there, in a fork of a process that has already imported the
    heavy libraries: the same CLI, argv, environment and working directory, the same output
    and exit code, seconds sooner. Otherwise, or when nothing answers there, it runs as a
    fresh subprocess. The task log says which.
    """

    template_fields: Sequence[str] = ("arguments",)
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        step: str,
        arguments: Sequence[str] | Any = (),
        env: dict[str, str] | None = None,
        asset_events: AssetEventFn | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.arguments = arguments  # a list, or an XComArg resolved at run time
        self.env = env or {}
        self.asset_events = asset_events
        self._process: subprocess.Popen[str] | None = None
        self._warm_pid: int | None = None

    def command(self) -> list[str]:
        """The step's command line (what a fresh subprocess runs; the warm runner runs its equivalent)."""
        return [sys.executable, "-m", f"jobs.{self.step}", *map(str, self.arguments)]

    def execute(self, context: Any) -> list[dict[str, Any]]:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        output: list[str] = []
        socket_path = os.environ.get(WARM_SOCKET_ENV)
        code = self._run_warm(socket_path, env, output) if socket_path else None
        if code is None:
            code = self._run_subprocess(env, output)
        if code == EXIT_SKIPPED:
            raise_for_exit_code(self.step, code, "\n".join(line[len(SKIP_PREFIX):] for line in output
                                                           if line.startswith(SKIP_PREFIX)) or _problem_lines(output))
        raise_for_exit_code(self.step, code, _problem_lines(output))
        if code != 0:
            raise AirflowException(f"jobs.{self.step} exited with code {code}:\n" + _problem_lines(output))
        return self.publish_results(context, parse_results("\n".join(output)))

    def _run_warm(self, socket_path: str, env: dict[str, str], output: list[str]) -> int | None:
        """The step's exit code from the warm runner; None when none answers (nothing ran)."""
        self.log.info("Running %s (warm runner %s)", " ".join(self.command()), socket_path)
        try:
            return run_step(socket_path, self.step, [str(arg) for arg in self.arguments], env=env, cwd=REPO_ROOT,
                            on_line=self._collect(output), on_start=self._started_warm)
        except WarmRunnerUnavailable as exc:
            self.log.warning("%s; running a fresh subprocess instead", exc)
            return None
        finally:
            self._warm_pid = None  # its pid may be reused once it ended: on_kill must not signal it

    def _run_subprocess(self, env: dict[str, str], output: list[str]) -> int:
        command = self.command()
        self.log.info("Running %s (fresh subprocess)", " ".join(command))
        self._process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, start_new_session=True,
        )
        assert self._process.stdout is not None
        collect = self._collect(output)
        for line in self._process.stdout:
            collect(line.rstrip("\n"))
        return self._process.wait()

    def _collect(self, output: list[str]) -> Callable[[str], None]:
        def collect(line: str) -> None:
            output.append(line)
            # Keep the step's own level, so warnings and errors stand out in the task log.
            self.log.log(_LEVELS.get(line.split(" ", 1)[0], logging.INFO), "%s", line)

        return collect

    def _started_warm(self, pid: int) -> None:
        self._warm_pid = pid

    def on_kill(self) -> None:
        if self._process and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
        elif self._warm_pid is not None:
            kill_step(self._warm_pid)  # the step leads its own process group on the warm runner


def container_exit_code(pod: Any, container_name: str) -> int | None:
    """Exit code of a terminated container of a V1Pod, or None."""
    statuses = (pod.status.container_statuses if pod is not None and pod.status else None) or []
    for status in statuses:
        if status.name == container_name and status.state and status.state.terminated:
            return status.state.terminated.exit_code
    return None


def _problem_lines(output: list[str], tail: int = 30) -> str:
    """What an on-call engineer needs first: errors and warnings, else the output's tail."""
    problems = [line for line in output if line.startswith(("ERROR", "CRITICAL", "Traceback")) or "rejected" in line]
    return "\n".join((problems or output)[-tail:])
