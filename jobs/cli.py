"""The argument parser every step's CLI starts from: its `python -m` name, its one-line purpose, examples.

`--help` ends with the examples, one command per line, ready to paste.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any


def step_parser(module: str, description: str, *examples: str) -> argparse.ArgumentParser:
    """A parser for `python -m {module}`; each example is the arguments after the module name."""
    prog = f"python -m {module}"
    epilog = "examples:\n" + "\n".join(f"  {prog} {example}" for example in examples) if examples else None
    return argparse.ArgumentParser(prog=prog, description=description.strip(), epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def model_version(text: str) -> str:
    """An argparse type: a registered model version is a positive integer ("7"), refused before MLflow is asked."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a model version is a positive integer, not {text!r}")
    return str(int(text))


def print_view(view: Any, as_json: bool, as_text: Callable[[Any], str]) -> int:
    """Print a read-only command's result, as JSON (--json) or as text; its exit code: 0."""
    print(json.dumps(view, indent=2, default=str) if as_json else as_text(view))
    return 0
