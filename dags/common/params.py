"""Trigger-form fields shared by the manually triggered DAGs (the form is the user's interface)."""
from __future__ import annotations

from airflow.sdk import Param


def optional_date(title: str, description: str) -> Param:
    """An optional flight date (YYYY-MM-DD; empty: the DAG's documented default)."""
    return Param(None, type=["null", "string"], format="date", title=title, description=description)
