"""Runs the backtest's CLI: `python -m jobs.backtest ...`."""
import sys

from jobs.backtest.cli import main

if __name__ == "__main__":
    sys.exit(main())
