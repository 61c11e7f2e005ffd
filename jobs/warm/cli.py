"""The CLI of jobs.warm: `serve` (the server) and `run` (a client), and the server's own log."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
import jobs.warm
from jobs.warm.client import run_step
from jobs.warm.protocol import WarmRunnerError
from jobs.warm.server import serve
from jobs.warm.step_process import exit_step, log_extra_imports, run_request

log = logging.getLogger("jobs.warm")


def _configure_server_log() -> None:
    """The server's own lines, on a copy of its stderr: a step's stdio is the client's, and its root logger its own."""
    handler = logging.StreamHandler(os.fdopen(os.dup(2), "w", buffering=1))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s jobs.warm[%(process)d]: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: list[str] | None = None) -> int | None:
    from jobs.cli import step_parser

    parser = step_parser("jobs.warm", jobs.warm.__doc__.split("\n\n")[0], "serve --socket /tmp/warm.sock")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="preload, then run steps for clients of the socket")
    serve_cmd.add_argument("--socket", required=True, type=Path, help="Unix socket path (created with mode 0600)")
    run_cmd = commands.add_parser("run", help="run a step on a warm runner (this environment and directory)")
    run_cmd.add_argument("--socket", required=True, type=Path, help="the server's socket")
    run_cmd.add_argument("step", help="a jobs module, e.g. ingest")
    run_cmd.add_argument("args", nargs=argparse.REMAINDER, help="the step's arguments")
    args = parser.parse_args(argv)

    if args.command == "run":
        try:
            return run_step(args.socket, args.step, args.args, env=dict(os.environ), on_line=print)
        except WarmRunnerError as exc:
            print(f"jobs.warm: {exc}", file=sys.stderr)
            return 2
    _configure_server_log()
    try:
        request = serve(args.socket)
    except (FileExistsError, ValueError) as exc:
        log.error("%s", exc)
        return 1
    if request is not None:  # this is a forked step process
        started, preloaded = time.perf_counter(), set(sys.modules)
        code = run_request(request)
        log_extra_imports(request, preloaded, time.perf_counter() - started)
        exit_step(code)
    return None

