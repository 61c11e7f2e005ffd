"""The CLI of jobs.backtest: arguments, exit codes and the STEP_RESULT line."""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys

import jobs.backtest
from jobs.backtest.request import DEFAULT_ALIAS, BacktestRejected, BacktestRequest, NothingToBacktest
from jobs.backtest.run import result_line, run_backtest
from jobs.lake import Lake
from jobs.results import EXIT_OK, EXIT_REJECTED, EXIT_SKIPPED, SKIP_PREFIX, emit_result, record_rejection


EXAMPLES = """examples:
  python -m jobs.backtest --version 3 --start 2013-03-01 --end 2013-03-31
  python -m jobs.backtest --alias champion                  # the last 14 labelled days
  python -m jobs.backtest --train-start 2013-01-01 --train-end 2013-01-31 --start 2013-02-01 --end 2013-02-28

Outputs: reports/backtest/{id}/backtest.json, backtest.html, backtest.png (and predictions/).
Exit codes: 0 done; 3 rejected (every problem named); 4 nothing to backtest; 1 other errors.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs.backtest", description=jobs.backtest.__doc__.split("\n\n")[0],
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    day = dt.date.fromisoformat
    parser.add_argument("--start", type=day, help="first flight date of the window (YYYY-MM-DD)")
    parser.add_argument("--end", type=day, help="last flight date of the window (default: 14 days)")
    parser.add_argument("--version", help="registered model version to backtest")
    parser.add_argument("--alias", help=f"backtest the version an alias names now (default {DEFAULT_ALIAS})")
    parser.add_argument("--train-start", type=day, help="train a model on this window first (not promoted)")
    parser.add_argument("--train-end", type=day, help="last flight date of the training window")
    parser.add_argument("--holdout-start", type=day, help="training's holdout (default: the days after train-end)")
    parser.add_argument("--holdout-end", type=day)
    parser.add_argument("--family", choices=("torch_mlp", "sklearn_hgb"), help="model family when training")
    parser.add_argument("--seed", type=int, help="training seed (default: training.seed)")
    parser.add_argument("--id", dest="backtest_id", help="report id (default: from the request)")
    parser.add_argument("--reason", default="", help="why (recorded on a trained version)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from jobs.registry import MlflowUnreachable
    from jobs.training_set import TrainingSetError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    request = BacktestRequest(**{k: v for k, v in vars(args).items() if v not in (None, "")})
    try:
        summary = run_backtest(Lake.from_settings(), request)
    except NothingToBacktest as exc:
        print(f"{SKIP_PREFIX}{exc}", flush=True)
        record_rejection(str(exc))
        return EXIT_SKIPPED
    except (BacktestRejected, TrainingSetError) as exc:
        print(f"ERROR jobs.backtest rejected: {exc}", file=sys.stderr)
        record_rejection(str(exc))
        return EXIT_REJECTED
    except MlflowUnreachable as exc:
        print(f"ERROR jobs.backtest: {exc}", file=sys.stderr)
        return 1
    emit_result(result_line(summary))
    return EXIT_OK

