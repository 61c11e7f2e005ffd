"""Every step's CLI answers --help with what it does and at least one example command."""
from __future__ import annotations

import importlib

import pytest

# module run as `python -m ...` -> the module whose main() it calls
STEPS = {
    "jobs.publish": "jobs.upstream.publish", "jobs.ingest": "jobs.ingest", "jobs.features": "jobs.features.cli",
    "jobs.training_set": "jobs.training_set", "jobs.train": "jobs.train", "jobs.evaluate": "jobs.evaluate",
    "jobs.score": "jobs.score", "jobs.monitor": "jobs.monitor", "jobs.registry": "jobs.registry",
    "jobs.backtest": "jobs.backtest", "jobs.replay_report": "jobs.replay_report", "jobs.health": "jobs.health",
    "jobs.warm": "jobs.warm", "jobs.lineage": "jobs.lineage",
}


def _help(module: str, capsys) -> str:
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(STEPS[module]).main(["--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("module", sorted(STEPS))
def test_help_names_the_command_and_gives_examples(module, capsys):
    text = _help(module, capsys)
    assert text.startswith(f"usage: python -m {module} ")
    examples = [line.strip() for line in text.splitlines() if line.strip().startswith(f"python -m {module} ")]
    assert examples, f"{module} --help shows no example:\n{text}"
