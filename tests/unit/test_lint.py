"""Lint as users' tools run it (ruff with Airflow's AIR rules, configured in pyproject.toml), and the package as installed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_ruff_with_airflow_rules_is_clean():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "."],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_pipeline_package_is_installed_not_found_by_a_path_trick(tmp_path):
    """`jobs` imports from any folder without PYTHONPATH (what a worker, a pod and a terminal rely on)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", "import jobs.settings as s; print(s.__file__); print(s.CONFIG_DIR)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    module, config = done.stdout.split()
    assert Path(module) == REPO_ROOT / "jobs" / "settings" / "__init__.py"
    assert (Path(config) / "settings.yaml").is_file()
