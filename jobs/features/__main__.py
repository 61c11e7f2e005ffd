"""Runs the feature step's CLI: `python -m jobs.features ...`, and the file Spark's driver runs for it.

Imports absolutely, so that running this file by its path (what Spark's PythonRunner does,
with PYTHONSAFEPATH=1: config/spark/spark_application.yaml) is `python -m jobs.features`.
"""
import sys

from jobs.features.cli import main

if __name__ == "__main__":
    sys.exit(main())
