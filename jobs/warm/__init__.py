"""Warm step runner: runs each `python -m jobs.<step>` in a fork of a process that already imported the heavy libraries.

    python -m jobs.warm serve --socket .airflow/warm.sock                # the local stack runs this
    python -m jobs.warm run --socket .airflow/warm.sock ingest --ds 2013-01-02   # = python -m jobs.ingest --ds ...

Why: in the local runner every heavy step is a fresh interpreter, and most of a day's task
time goes to importing Great Expectations, Evidently, MLflow, pyspark's Connect client and
torch again. The server imports them once (`PRELOAD` and every jobs module) and creates no
session, channel, thread pool or GX context, so that a fork of it is as good as a fresh
interpreter. Then it listens on a Unix socket (mode 0600) and, per connection, forks a relay:
- the relay reads the request (`StepRequest`: step, argv, env overrides, cwd), refuses any
  step that is not a module of the jobs package with a `main`, and forks the step process;
- the step process leads a new session (so the caller can kill its process group), resets
  its signal handlers, writes stdout and stderr to a pipe, applies the env overrides (a null
  value unsets), changes to the cwd, forgets the jobs modules (imported again from the
  source, so settings, caches and module constants follow the request's environment), then
  runs `jobs.<step>` as `__main__` with the argv, as `python -m` does, and exits the way a
  fresh interpreter would: SystemExit's code, or a traceback and 1; threads are joined and
  atexit handlers run;
- the relay sends the step's pid, then its output line by line, then its exit code (-N when
  signal N killed it, as subprocess reports it); SIGINT or SIGTERM to the relay, or the
  client going away, send SIGTERM to the step's process group.
The server itself only accepts and forks: a step that crashes or is killed takes nothing else
with it. SIGINT or SIGTERM stop the server: the socket is removed, running relays get SIGTERM.

Messages are multiprocessing.connection frames holding one JSON object each: the request,
then {"pid": N}, {"line": "..."} per output line, {"exit": N}; or {"error": "..."} alone when
the request is refused. `run_step` is the client; `kill_step` kills a step's process group.

What a fork shares with the server, unlike a fresh interpreter: the values libraries read
from the environment when imported (the server's environment: the stack gives it the
pipeline's), Python's hash seed, and native threads started by imports (OpenBLAS pools,
Arrow's jemalloc background thread; all fork-aware). NumPy's and torch's global random
generators are reseeded in each step, as Python's `random` is by fork itself.

Modules: `protocol` (requests and frames), `client`, `steps` (what may run, the preload),
`server` (listen, relay, stream), `step_process` (the forked step), `cli`.
"""
from __future__ import annotations

from jobs.warm.cli import main
from jobs.warm.client import kill_step, run_step, serving
from jobs.warm.protocol import WARM_SOCKET_ENV, StepRequest, WarmRunnerError, WarmRunnerUnavailable
from jobs.warm.server import REQUEST_TIMEOUT_S, STOP_GRACE_S, STOP_SIGNALS, serve
from jobs.warm.step_process import exit_step, run_request
from jobs.warm.steps import PRELOAD, check_step, preload, step_names

__all__ = ["PRELOAD", "REQUEST_TIMEOUT_S", "STOP_GRACE_S", "STOP_SIGNALS", "WARM_SOCKET_ENV", "StepRequest",
           "WarmRunnerError", "WarmRunnerUnavailable", "check_step", "exit_step", "kill_step", "main", "preload",
           "run_request", "run_step", "serve", "serving", "step_names"]
