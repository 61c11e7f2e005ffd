"""Runs the warm runner's CLI: `python -m jobs.warm serve|run ...`."""
import sys

from jobs.warm.cli import main

if __name__ == "__main__":
    sys.exit(main())
