"""The backtest's page (backtest.html) and chart (backtest.png), from its summary."""
from __future__ import annotations

import datetime as dt
import io
from typing import Any


def render_html(summary: dict[str, Any]) -> str:
    """A self-contained page: what was backtested, and the table of days and totals."""
    from jobs.reports import render_page

    return render_page("backtest.html.j2", summary=summary, generated_at=summary["generated_at"])


def render_chart(summary: dict[str, Any]) -> bytes:
    """PNG: daily ROC AUC of the backtested model and of what was served."""
    from matplotlib.dates import DateFormatter, DayLocator
    from matplotlib.figure import Figure

    days = [dt.date.fromisoformat(d["ds"]) for d in summary["days"]]
    figure = Figure(figsize=(10, 4), dpi=100)
    axes = figure.subplots()
    for side, label, style in (("backtest", f"backtest v{summary['model']['version']}", "o-"),
                               ("served", "served", "s--")):
        values = [(d.get(side) or {}).get("roc_auc") for d in summary["days"]]
        axes.plot(days, [float("nan") if v is None else v for v in values],
                  style if len(days) <= 62 else style[1:], label=label)  # markers hide a long window's line
    axes.xaxis.set_major_locator(DayLocator(interval=max(1, len(days) // 12)))
    axes.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
    axes.set_ylabel("ROC AUC")
    axes.set_title(f"Backtest {summary['id']}: daily ROC AUC")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()

