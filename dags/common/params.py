"""Trigger-form fields shared by the manually triggered DAGs (the form is the user's interface)."""
from __future__ import annotations

from airflow.sdk import Param

from common.config import settings


def flight_date_pattern() -> str:
    """A YYYY-MM-DD of a year the data covers (2013): the form and the REST API refuse any other year."""
    data = settings().data
    years = "|".join(str(year) for year in range(data.first_flight_date.year, data.last_flight_date.year + 1))
    return rf"^({years})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"


def optional_date(title: str, description: str) -> Param:
    """An optional flight date (YYYY-MM-DD within the data's years; empty: the DAG's documented default)."""
    return Param(None, type=["null", "string"], format="date", pattern=flight_date_pattern(), title=title,
                 description=description)


def flight_date(default: str, title: str, description: str) -> Param:
    """A required flight date (YYYY-MM-DD within the data's years)."""
    return Param(default, type="string", format="date", pattern=flight_date_pattern(), title=title,
                 description=description)
