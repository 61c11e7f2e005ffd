"""Start, inspect and stop one stack: spawn each component in its own session, migrate, wait for health, stop in waves."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil

from jobs.warm import serving
from scripts.airflow_api import AirflowClient
from scripts.stack.config import (
    ADMIN_USER, AIRFLOW_COMPONENTS, AIRFLOW_HEALTH_PARTS, REPO_ROOT, SPARK_CONNECT, STACK_MARK, STOP_SIGNALS, STOP_WAVES, StackConfig, WARM_RUNNER,
)
from scripts.stack.health import (
    ComponentStatus, StackStatus, airflow_health, mlflow_healthy, port_free, port_open, read_admin_password, tail, unhealthy_airflow_parts,
)
from scripts.stack.processes import (
    EXEC_WITH_DEFAULT_SIGINT, alive, children, component_of, components_of, describe, flatten, in_sessions, orphans,
    process_group, pss_bytes, redact, relative, send_signal, stack_processes, tracked,
)
from scripts.stack.state import clear_state, read_state, stack_lock, write_state

Echo = Callable[[str], None]


class StackError(RuntimeError):
    """The stack could not be started or stopped cleanly; the message says why and shows logs."""


def _echo(message: str) -> None:
    print(message, flush=True)


class Stack:
    """Start, inspect and stop the processes of one `StackConfig`."""

    def __init__(self, config: StackConfig, echo: Echo | None = _echo):
        self.config = config
        self._echo = echo or (lambda message: None)
        self._popen: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- public ----------------------------------------------------------------------------

    def start(self, timeout: float = 300.0) -> bool:
        """Start every component and wait until all are healthy.

        Returns False (and starts nothing) when the stack already runs. A stack left half
        alive (a component died) is stopped and started again. On failure everything started
        is stopped and StackError carries the reason and the failing logs' tails.
        """
        config = self.config
        with stack_lock(self.config):
            state = read_state(self.config)
            running = tracked(state)
            if state and running and set(running) == set(config.components):
                self._echo(f"stack already running (Airflow {state['airflow_url']}, MLflow {state['mlflow_url']})")
                return False
            if running:
                dead = sorted(set(config.components) - set(running))
                self._echo(f"stack is partly running (not running: {', '.join(dead)}); restarting it")
            if running or stack_processes(self.config, state):
                self._stop_locked(grace=30.0)  # what is left of an earlier stack
            clear_state(self.config)
            self._check_environment()
            started = time.monotonic()
            for folder in (config.airflow_home, config.log_dir, config.openlineage_dir, config.mlflow_home,
                           config.mlflow_artifacts):
                folder.mkdir(parents=True, exist_ok=True)
            if "://" not in config.lake_root:
                Path(config.lake_root).mkdir(parents=True, exist_ok=True)
            commands = config.commands()
            try:
                # MLflow and Spark take a few seconds to come up: let them overlap the migration.
                self._spawn("mlflow", commands["mlflow"], config.mlflow_env(), cwd=config.mlflow_home)
                if SPARK_CONNECT in commands:
                    self._spawn(SPARK_CONNECT, commands[SPARK_CONNECT], config.spark_connect_env(),
                                cwd=config.airflow_home)
                if WARM_RUNNER in commands:  # its imports (10-20 s) overlap the migration too
                    self._spawn(WARM_RUNNER, commands[WARM_RUNNER], config.warm_runner_env(), cwd=config.airflow_home)
                write_state(self.config, self._popen)
                self._migrate()
                for name in AIRFLOW_COMPONENTS:
                    self._spawn(name, commands[name], config.airflow_env(), cwd=config.airflow_home)
                write_state(self.config, self._popen)
                self._wait_healthy(started + timeout)
            except BaseException:
                self._echo("start failed; stopping what was started")
                self._stop_locked(grace=15.0)
                raise
        status = self.status()
        self._echo(f"stack started in {time.monotonic() - started:.0f} s, {status.pss_mb / 1024:.1f} GiB (PSS)")
        self._print_endpoints()
        return True

    def stop(self, grace: float = 30.0) -> list[str]:
        """Stop every process of the stack; returns descriptions of any left (none if clean).

        SIGINT to each component's process group (what Ctrl-C in its terminal does; SIGTERM
        for MLflow): first the scheduler, triggerer and dag processor, which get up to `grace`
        seconds (the scheduler lets running tasks finish), then the API server and MLflow,
        which the tasks talk to until their end. Then SIGTERM, and at last SIGKILL, to
        whatever is left (see `processes`); a final scan must find nothing.
        """
        with stack_lock(self.config):
            return self._stop_locked(grace)

    def status(self) -> StackStatus:
        state = read_state(self.config) or {}
        running = tracked(state)
        airflow_url = state.get("airflow_url", self.config.airflow_url)
        mlflow_url = state.get("mlflow_url", self.config.mlflow_url)
        components = {}
        for name in self.config.components:
            proc = running.get(name)
            family = [proc, *children(proc)] if proc else []
            components[name] = ComponentStatus(
                name=name,
                pid=proc.pid if proc else None,
                running=proc is not None,
                pss_mb=sum(pss_bytes(p) for p in family) / 2**20,
                processes=len(family),
                log=self.config.log_file(name),
            )
        any_running = bool(running)
        return StackStatus(
            airflow_url=airflow_url,
            mlflow_url=mlflow_url,
            components=components,
            airflow_health=airflow_health(airflow_url) if any_running else None,
            mlflow_healthy=mlflow_healthy(mlflow_url) if any_running else False,
            warm_runner_serving=(any_running and serving(self.config.warm_socket)) if self.config.warm_runner else None,
        )

    def print_status(self) -> StackStatus:
        status = self.status()
        if not any(c.running for c in status.components.values()):
            self._echo("stack is not running (start it: python -m scripts.stack start)")
            return status
        self._print_endpoints(status)
        for c in status.components.values():
            where = f"pid {c.pid:<7} {c.processes:>2} proc {c.pss_mb:6.0f} MB" if c.running else "NOT RUNNING"
            self._echo(f"  {c.name:<14} {where}  log {relative(c.log)}")
        parts = ", ".join(
            f"{part} {(status.airflow_health or {}).get(part, {}).get('status', 'unknown')}"
            for part in AIRFLOW_HEALTH_PARTS
        )
        warm = {None: "", True: "; warm runner serving", False: "; warm runner NOT serving"}[status.warm_runner_serving]
        self._echo(f"  health: {parts}; mlflow {'healthy' if status.mlflow_healthy else 'NOT healthy'}{warm}")
        self._echo(f"  memory: {status.pss_mb / 1024:.1f} GiB (PSS of every process of the stack)")
        return status

    def admin_credentials(self, timeout: float = 0.0) -> tuple[str, str]:
        return get_admin_credentials(self.config, timeout=timeout)

    def client(self, timeout: float = 120.0) -> AirflowClient:
        """A REST client logged in as the admin user."""
        user, password = self.admin_credentials()
        return AirflowClient(self.config.airflow_url, user, password, timeout=timeout)

    def processes(self) -> list[psutil.Process]:
        """Every live process of this stack, wherever it is in the process tree.

        A process belongs to the stack if it is
        - in the session of a running component (its start time checked against the state
          file, so a recycled PID is not taken for it), or
        - carries the stack's mark in its environment (a task's subprocess that started a
          session of its own, e.g. BashOperator's), or
        - descends from a running component, or
        - is left from a component that died: in its session, started after it, and running
          in one of the stack's homes (the components' working directories). The mark alone
          would not find these: `setproctitle` (Airflow's "airflow worker", "airflow
          serve-logs" titles) overwrites the memory that /proc/<pid>/environ reads.
        """
        return list(stack_processes(self.config, read_state(self.config)).values())

    def leftover_processes(self) -> list[str]:
        """Descriptions of processes of this stack still alive (empty once stopped)."""
        return [describe(p) for p in self.processes()]

    # -- start -----------------------------------------------------------------------------

    def _check_environment(self) -> None:
        config = self.config
        ports = {
            "Airflow API server, AIRFLOW_PORT": config.airflow_port,
            "MLflow, MLFLOW_PORT": config.mlflow_port,
            "worker log server": config.worker_log_port,
            "trigger log server": config.trigger_log_port,
        }
        if config.spark_connect_port:
            ports["Spark Connect server, SPARK_CONNECT_PORT"] = config.spark_connect_port
        if len(set(ports.values())) != len(ports):
            raise StackError(f"ports must differ: {ports}")
        if config.warm_runner and serving(config.warm_socket):
            raise StackError(f"a warm runner of another stack serves at {config.warm_socket}; stop it first")
        busy = [f"{config.host}:{port} ({what})" for what, port in ports.items() if not port_free(config.host, port)]
        if busy:
            raise StackError(
                f"port in use by another program: {', '.join(busy)}; stop that program or choose "
                "other ports"
            )
        for module in ("airflow", "mlflow"):
            if importlib.util.find_spec(module) is None:
                raise StackError(f"{module} is not installed for {sys.executable}; run `make venv`")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        """Start one component in a session of its own, detached from any terminal."""
        log = self.config.log_file(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        if log.exists():
            log.replace(log.with_name(log.name + ".1"))  # keep the previous run's log
        env = {**env, STACK_MARK: str(self.config.airflow_home)}
        with open(log, "wb") as out:
            self._popen[name] = subprocess.Popen(
                [sys.executable, "-c", EXEC_WITH_DEFAULT_SIGINT, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,  # detached from the terminal; its own process group
            )

    def _migrate(self) -> None:
        log = self.config.log_dir / "db-migrate.log"
        self._echo(f"airflow db migrate ({redact(self.config.sql_alchemy_conn)})")
        with open(log, "wb") as out:
            result = subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.config.airflow_env(),
                cwd=REPO_ROOT,
                check=False,
            )
        if result.returncode != 0:
            raise StackError(f"airflow db migrate failed (exit {result.returncode}); {relative(log)}:\n{tail(log)}")

    def _wait_healthy(self, deadline: float) -> None:
        config = self.config
        self._echo(f"waiting for MLflow on {config.mlflow_url} and Airflow on {config.airflow_url} ...")
        last_waiting: list[str] = []
        while True:
            for name, popen in self._popen.items():
                if popen.poll() is not None:
                    raise StackError(
                        f"{name} exited with code {popen.returncode} while starting; "
                        f"{relative(config.log_file(name))}:\n{tail(config.log_file(name))}"
                    )
            waiting = []
            if not mlflow_healthy(config.mlflow_url):
                waiting.append("mlflow")
            if config.spark_connect_port and not port_open(config.host, config.spark_connect_port):
                waiting.append(SPARK_CONNECT)
            if config.warm_runner and not serving(config.warm_socket):
                waiting.append(WARM_RUNNER)
            health = airflow_health(config.airflow_url)
            waiting += ["api-server"] if health is None else unhealthy_airflow_parts(health)
            if health is not None and read_admin_password(config.passwords_file) is None:
                waiting.append("admin password file")
            if not waiting:
                return
            if waiting != last_waiting:
                self._echo(f"  waiting for: {', '.join(waiting)}")
                last_waiting = waiting
            if time.monotonic() > deadline:
                logs = {component_of(part) for part in waiting}
                tails = "\n\n".join(f"--- {relative(config.log_file(n))}\n{tail(config.log_file(n))}" for n in sorted(logs))
                raise StackError(f"not healthy in time: {', '.join(waiting)}\n{tails}")
            time.sleep(1.0)

    # -- stop ------------------------------------------------------------------------------

    def _stop_locked(self, grace: float) -> list[str]:
        state = read_state(self.config)
        running = tracked(state)
        procs = stack_processes(self.config, state)
        if not procs:
            self._echo("stack is not running")
            clear_state(self.config)
            return []
        names = ", ".join(running) or "what is left of it"
        self._echo(f"stopping {names} ({len(procs)} processes) ...")
        started = time.monotonic()
        components = components_of(state)
        # Left-overs of a component that died have nobody to shut them down in order (idle
        # LocalExecutor workers even ignore SIGINT): SIGTERM now, SIGKILL after a few seconds.
        orphaned = {proc.pid: proc for proc in orphans(procs, state)}
        for proc in orphaned.values():
            send_signal(proc, signal.SIGTERM)
        # 1. Ctrl-C for each component's process group (SIGTERM for MLflow), in two waves:
        #    running tasks report their end through the API server (Execution API) and may
        #    log to MLflow, so those two stop only once the scheduler and its tasks are done.
        #    The scheduler waits for running tasks: that is what the grace period is for.
        for index, wave in enumerate(STOP_WAVES):
            # The first wave gets the grace period, the API server and MLflow a short one.
            deadline = started + grace if index == 0 else time.monotonic() + 15.0
            later = {components[name]["pid"] for name in flatten(STOP_WAVES[index + 1 :]) if name in components}
            live_groups = {process_group(proc) for proc in stack_processes(self.config, state).values()}
            for name in wave:
                entry = components.get(name)
                if entry and entry["pid"] in live_groups:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(entry["pid"], STOP_SIGNALS.get(name, signal.SIGINT))
            while True:
                self._reap()
                pending = [p for p in stack_processes(self.config, state).values() if not in_sessions(p, later)]
                if orphaned and time.monotonic() > started + 5.0:
                    for proc in orphaned.values():
                        send_signal(proc, signal.SIGKILL)
                    orphaned = {}
                if not pending or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            if pending:
                break  # out of time: escalate below
        # 2. and 3. Whatever did not stop on Ctrl-C.
        alive = list(stack_processes(self.config, state).values())
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if not alive:
                break
            self._echo(f"  {len(alive)} processes still running after {time.monotonic() - started:.0f} s; {sig.name}")
            for proc in alive:
                send_signal(proc, sig)
            alive = self._wait_gone({p.pid: p for p in alive}, state, wait)
        self._reap()
        leftovers = [describe(p) for p in stack_processes(self.config, state).values()]
        if leftovers:
            self._echo("processes left running:\n  " + "\n  ".join(leftovers))
        else:
            self._echo(f"stopped in {time.monotonic() - started:.0f} s; no process left")
            clear_state(self.config)
        return leftovers

    def _wait_gone(
        self, procs: dict[int, psutil.Process], state: Mapping[str, Any] | None, timeout: float
    ) -> list[psutil.Process]:
        """Wait until the processes are gone (re-scanning: shutting down can start some)."""
        deadline = time.monotonic() + timeout
        while True:
            self._reap()
            procs = {pid: p for pid, p in {**procs, **stack_processes(self.config, state)}.items() if alive(p)}
            if not procs or time.monotonic() > deadline:
                return list(procs.values())
            time.sleep(0.25)

    def _reap(self) -> None:
        """Collect the exit status of components started by this process (no zombies)."""
        for popen in self._popen.values():
            popen.poll()

    def _print_endpoints(self, status: StackStatus | None = None) -> None:
        config = self.config
        airflow_url = status.airflow_url if status else config.airflow_url
        mlflow_url = status.mlflow_url if status else config.mlflow_url
        password = read_admin_password(config.passwords_file)
        login = f"login {ADMIN_USER} / {password}" if password else "no admin password yet"
        self._echo(f"Airflow  {airflow_url}  ({login}; {relative(config.passwords_file)})")
        self._echo(f"MLflow   {mlflow_url}")
        if config.spark_remote:
            self._echo(f"Spark    {config.spark_remote} (Spark Connect; the Spark steps' sessions)")
        if config.warm_runner:
            self._echo(f"steps    {relative(config.warm_socket)} (warm runner: each step a fork of preloaded libraries)")
        self._echo(f"lake     {config.lake_root}")
        self._echo(f"logs     {relative(config.log_dir)}/*.log, {relative(config.log_file('mlflow'))}")


def get_admin_credentials(config: StackConfig | None = None, timeout: float = 0.0) -> tuple[str, str]:
    """(user, password) of the Airflow admin, read from SimpleAuthManager's generated file.

    The API server writes the file when it first starts; `timeout` waits for it.
    """
    config = config or StackConfig.local()
    deadline = time.monotonic() + timeout
    while True:
        password = read_admin_password(config.passwords_file)
        if password:
            return ADMIN_USER, password
        if time.monotonic() >= deadline:
            raise StackError(
                f"no password for {ADMIN_USER!r} in {config.passwords_file}; "
                "is the stack started? (python -m scripts.stack start)"
            )
        time.sleep(0.5)
