"""The feeds' Great Expectations suites: read from config/expectations/{feed}.json, their levels checked, built; GX imported once."""
from __future__ import annotations

import json
import logging
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from jobs.settings import CONFIG_DIR
from jobs.validation.contract import FILE, ROW

log = logging.getLogger("jobs.validation")

SUITE_DIR = CONFIG_DIR / "expectations"


class SuiteError(RuntimeError):
    """An expectation suite file is missing or not loadable by GX."""


def suite_path(feed: str) -> Path:
    return SUITE_DIR / f"{feed}.json"


@lru_cache(maxsize=None)
def _suite_text(feed: str) -> str:
    path = suite_path(feed)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise SuiteError(f"no expectation suite for feed {feed!r}: {path} does not exist") from None


def load_suite_config(feed: str) -> dict[str, Any]:
    """The suite of `feed` as stored (a fresh copy: callers may change it)."""
    try:
        config = json.loads(_suite_text(feed))
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{suite_path(feed)}: not valid JSON: {exc}") from None
    for number, expectation in enumerate(config.get("expectations", [])):
        level = expectation.get("meta", {}).get("level")
        if level not in (FILE, ROW):
            raise SuiteError(
                f"{suite_path(feed)}: expectation #{number} ({expectation.get('type')}) has meta.level "
                f"{level!r}, expected 'file' or 'row'"
            )
    return config


def build_suite(feed: str):
    """The feed's suite as a GX ExpectationSuite."""
    from great_expectations.core.expectation_suite import ExpectationSuite

    config = load_suite_config(feed)
    suite = ExpectationSuite(**config)
    # GX logs and drops an expectation it cannot load; a silently missing check is worse than a crash.
    if len(suite.expectations) != len(config["expectations"]):
        loaded = {type(e).__name__ for e in suite.expectations}
        raise SuiteError(
            f"{suite_path(feed)}: GX could not load {len(config['expectations']) - len(suite.expectations)} "
            f"expectation(s) (loaded types: {sorted(loaded)}); see the GX log above"
        )
    return suite


@lru_cache(maxsize=1)
def import_gx():
    started = time.perf_counter()
    # GX logs its own start-up at INFO; our log says what matters.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    log.info("imported great_expectations %s in %.1fs", gx.__version__, time.perf_counter() - started)
    return gx
