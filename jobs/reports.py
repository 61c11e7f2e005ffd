"""The HTML pages the pipeline writes beside its JSON (model card, backtest, year replay), from Jinja2 templates.

Templates live in `jobs/templates/`; every value is HTML-escaped (autoescape), numbers go
through the `num` filter (fixed digits, a dash or nothing when missing).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"


def num(value: Any, digits: int = 3, missing: str = "-") -> str:
    """`value` with `digits` decimals; `missing` when there is none."""
    return missing if value is None else f"{value:.{digits}f}"


@lru_cache(maxsize=1)
def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = num
    return env


def render_page(template: str, **context: Any) -> str:
    """One self-contained HTML page (`generated_at` is shown at its foot)."""
    return environment().get_template(template).render(**context)
