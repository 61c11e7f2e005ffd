"""`python -m scripts.stack start|status|stop`: the local stack from a terminal (`make demo` and `make stop` call it)."""
from __future__ import annotations

import argparse
import sys

from scripts.stack import __doc__ as STACK_DOC
from scripts.stack.config import REPO_ROOT, StackConfig
from scripts.stack.control import Stack, StackError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.stack", description=STACK_DOC.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start Airflow and MLflow in the background and wait until healthy")
    start.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for health (default 300)")
    stop = commands.add_parser("stop", help="stop every process of the stack")
    stop.add_argument("--grace", type=float, default=30.0, help="seconds before SIGTERM/SIGKILL (default 30)")
    commands.add_parser("status", help="what runs and where")
    args = parser.parse_args(argv)

    try:
        config = StackConfig.local()
    except Exception as exc:  # noqa: BLE001 - broken settings must not keep `make stop` from stopping
        if args.command == "start":
            raise
        print(f"warning: settings not loaded ({exc}); using the default stack location", file=sys.stderr)
        config = StackConfig(REPO_ROOT / ".airflow", REPO_ROOT / ".mlflow", str(REPO_ROOT / "data" / "lake"))
    stack = Stack(config)
    try:
        if args.command == "start":
            stack.start(timeout=args.timeout)
            return 0
        if args.command == "stop":
            return 1 if stack.stop(grace=args.grace) else 0
        status = stack.print_status()
        if not any(c.running for c in status.components.values()):
            return 3
        return 0 if status.healthy else 1
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
