"""What a validation answers: the reference code sets rows are checked against, each failed check, the result."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from jobs.validation.contract import QUARANTINED, REJECTED


@dataclass(frozen=True)
class References:
    """The code sets rows are checked against (from the reference tables and settings)."""

    carriers: tuple[str, ...]
    airports: tuple[str, ...]
    origins: tuple[str, ...]
    tailnums: tuple[str, ...]

    @classmethod
    def from_tables(
        cls,
        *,
        planes: pd.DataFrame,
        airports: pd.DataFrame,
        airlines: pd.DataFrame,
        origins: Iterable[str],
        extra_airports: Iterable[str] = (),
    ) -> "References":
        def codes(frame: pd.DataFrame, column: str, table: str) -> tuple[str, ...]:
            if column not in frame.columns:
                raise ValueError(f"reference table {table} has no column {column!r} (columns: {list(frame.columns)})")
            return tuple(sorted({str(v) for v in frame[column].dropna()}))

        return cls(
            carriers=codes(airlines, "carrier", "airlines"),
            airports=tuple(sorted(set(codes(airports, "faa", "airports")) | set(extra_airports))),
            origins=tuple(sorted(origins)),
            tailnums=codes(planes, "tailnum", "planes"),
        )


@dataclass(frozen=True)
class Failure:
    """One failed check. `level`: file (the whole delivery) or row; `rows`: bad rows it flagged."""

    check: str
    level: str
    detail: str
    reason: str = ""
    rows: int = 0

    def __str__(self) -> str:
        return f"{self.check}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "level": self.level, "detail": self.detail, "reason": self.reason,
                "rows": self.rows}


@dataclass
class ValidationResult:
    feed: str
    ds: str
    status: str
    rows_read: int
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    good_rows: pd.DataFrame | None = None
    bad_rows: pd.DataFrame | None = None
    checks_run: int = 0
    elapsed_s: float = 0.0
    gx_result: dict[str, Any] | None = None
    docs_index: Path | None = None

    @property
    def rows(self) -> int:
        """Rows that passed (0 when the file is rejected)."""
        return 0 if self.status == REJECTED or self.good_rows is None else len(self.good_rows)

    @property
    def quarantined_rows(self) -> int:
        return 0 if self.bad_rows is None else len(self.bad_rows)

    @property
    def message(self) -> str:
        head = f"{self.feed} {self.ds}"
        if self.status == REJECTED:
            return f"{head} rejected: " + "; ".join(str(f) for f in self.failures)
        if self.status == QUARANTINED:
            return (
                f"{head} passed with {self.quarantined_rows} of {self.rows_read} rows quarantined: "
                + "; ".join(str(f) for f in self.failures)
            )
        text = f"{head} passed: {self.rows_read} rows, {self.checks_run} checks"
        return text + (f" ({len(self.warnings)} warning(s))" if self.warnings else "")

    def to_json(self) -> dict[str, Any]:
        """Everything but the frames, JSON-ready (GX's own result included)."""
        return {
            "feed": self.feed,
            "ds": self.ds,
            "status": self.status,
            "message": self.message,
            "rows_read": self.rows_read,
            "rows": self.rows,
            "quarantined_rows": self.quarantined_rows,
            "checks_run": self.checks_run,
            "elapsed_s": round(self.elapsed_s, 3),
            "failures": [f.to_json() for f in self.failures],
            "warnings": list(self.warnings),
            "gx_result": self.gx_result,
        }
