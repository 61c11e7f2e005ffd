"""`python -m tests.faults.replay_report_days 2013-01-07 2013-01-08`: jobs.replay_report's comparison with one
period per day given, run as a process of its own: the step the replay report's kill test kills (the CLI compares
whole months, which the fault tests' eight-day lake does not hold; everything else is the CLI's code)."""
from __future__ import annotations

import datetime as dt
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from jobs.lake import Lake
    from jobs.replay_report import build_report
    from jobs.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    days = [dt.date.fromisoformat(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    settings = get_settings()
    build_report(Lake.from_settings(settings), days[0].year, [(day.isoformat(), day, day) for day in days],
                 settings=settings, family="sklearn_hgb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
