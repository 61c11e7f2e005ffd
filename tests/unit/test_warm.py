"""The warm step runner (jobs/warm.py), run for real: a server on a temporary socket runs real steps.

A step run there must be indistinguishable from `python -m jobs.<step>`: the same files, the
same output and STEP_RESULT lines, the same exit codes; each request sees its own
environment and fresh jobs modules; nothing a step does (crash, kill -9, a client that
hangs up) harms the server. The server is stopped with Ctrl-C at the end and must exit 0
and remove its socket (tests/integration/stack.py `warm_runner`).
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from multiprocessing.connection import Client
from pathlib import Path

import pytest

from jobs.results import parse_results
from jobs.warm import WarmRunnerError, kill_step, run_step, serving
from tests.integration.stack import warm_runner

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTINGS_VARS = ("PIPELINE_ENV", "LAKE_ROOT", "MLFLOW_TRACKING_URI", "PIPELINE_XCOM_FILE", "PIPELINE_WARM_SOCKET")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> dict[str, Path]:
    """A warm runner whose own LAKE_ROOT is `server_lake` (what a request without LAKE_ROOT gets)."""
    base = tmp_path_factory.mktemp("warm")
    with warm_runner(base, env={"LAKE_ROOT": str(base / "server-lake")}) as socket_path:
        yield {"socket": socket_path, "base": base, "server_lake": base / "server-lake"}


def warm(server, step: str, *argv: str, env: dict | None = None, cwd: Path = REPO_ROOT, **kwargs) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = run_step(server["socket"], step, argv, env=env, cwd=cwd, on_line=lines.append, **kwargs)
    return code, lines


def fresh(step: str, *argv: str, env: dict) -> tuple[int, list[str]]:
    """The same step as a fresh interpreter, as the operator ran it before the warm runner."""
    base = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARS and not k.startswith("PIPELINE__")}
    done = subprocess.run([sys.executable, "-m", f"jobs.{step}", *argv], cwd=REPO_ROOT, text=True,
                          env={**base, **env}, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, check=False)
    return done.returncode, done.stdout.splitlines()


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_socket_is_private_and_taken(server):
    assert stat.S_IMODE(server["socket"].stat().st_mode) == 0o600
    assert serving(server["socket"])
    # A second server on a live socket fails at once (before its long preload), the first stays.
    second = subprocess.run([sys.executable, "-m", "jobs.warm", "serve", "--socket", str(server["socket"])],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "already serves" in second.stderr
    assert serving(server["socket"])


def test_a_step_runs_as_its_cli(server, tmp_path):
    warm_lake, fresh_lake = tmp_path / "warm", tmp_path / "fresh"
    code, out = warm(server, "publish", "--ds", "2013-01-01", env={"LAKE_ROOT": str(warm_lake)})
    fresh_code, fresh_out = fresh("publish", "--ds", "2013-01-01", env={"LAKE_ROOT": str(fresh_lake)})
    assert (code, fresh_code) == (0, 0), "\n".join(out + fresh_out)
    assert out == [line.replace(str(fresh_lake), str(warm_lake)) for line in fresh_out]
    assert files(warm_lake) == files(fresh_lake)
    assert len(files(warm_lake)) == 6  # 3 reference tables, 3 feeds

    step = ("ingest", "--ds", "2013-01-01", "--feed", "schedule")
    code, out = warm(server, *step, env={"LAKE_ROOT": str(warm_lake)})
    fresh_code, fresh_out = fresh(*step, env={"LAKE_ROOT": str(fresh_lake)})
    assert (code, fresh_code) == (0, 0), "\n".join(out + fresh_out)
    warm_results = parse_results("\n".join(out))
    assert warm_results == json.loads(json.dumps(parse_results("\n".join(fresh_out))).replace(str(fresh_lake), str(warm_lake)))
    assert [r["status"] for r in warm_results] == ["passed"] and warm_results[0]["rows"] == 842
    assert (warm_lake / "raw" / "schedule" / "date=2013-01-01").is_dir()
    assert [line.split(" ", 2)[:2] for line in out] == [line.split(" ", 2)[:2] for line in fresh_out], \
        "the same lines, each at its level (the task log keeps them)"


def test_rejection_and_skip_exit_codes_pass_through(server, tmp_path):
    lake = {"LAKE_ROOT": str(tmp_path / "lake")}
    assert warm(server, "publish", "--ds", "2013-01-02", "--feed", "schedule", "--corrupt", "missing_column",
                env=lake)[0] == 0
    code, out = warm(server, "ingest", "--ds", "2013-01-02", "--feed", "schedule", env=lake)
    assert code == 3, out
    assert any("rejected" in line for line in out)

    # No champion in an empty registry: skipped with the step's reason. Run in a directory of
    # the test's (MLflow's SQLite store would put ./mlruns there), which the step then sees as cwd.
    mlflow = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", **lake}
    code, out = warm(server, "score", "--ds", "2013-01-02", env=mlflow, cwd=tmp_path)
    assert code == 4, out
    assert any(line.startswith("SKIPPED no flight_delay@champion yet") for line in out)


def test_usage_errors_and_crashes_exit_as_the_interpreter_does(server, tmp_path):
    code, out = warm(server, "ingest", "--no-such-option")
    assert code == 2 and out[0].startswith("usage: python -m jobs.ingest"), out
    # An uncaught exception: its traceback on the step's output, exit 1.
    code, out = warm(server, "publish", "--ds", "2013-01-01", env={"LAKE_ROOT": "/dev/null/lake"})
    assert code == 1
    assert out[0] == "Traceback (most recent call last):" and out[-1].startswith("NotADirectoryError"), out


@pytest.mark.parametrize("step, reason", [
    ("nope", "unknown step 'nope'"),
    ("warm", "unknown step 'warm'"),
    ("../jobs/publish", "unknown step '../jobs/publish'"),
    ("results", "jobs.results is not a step: it has no main()"),
])
def test_only_steps_run(server, step, reason):
    with pytest.raises(WarmRunnerError, match="refused") as refused:
        warm(server, step)
    assert reason in str(refused.value)
    assert "steps: " in str(refused.value) or "main()" in str(refused.value), "says what is allowed"


def test_a_malformed_request_is_refused(server):
    with Client(str(server["socket"]), family="AF_UNIX") as conn:
        conn.send_bytes(json.dumps({"step": "publish", "argv": "--ds 2013-01-01"}).encode())
        assert json.loads(conn.recv_bytes()) == {"error": "argv: a list of strings"}
    with Client(str(server["socket"]), family="AF_UNIX") as conn:
        conn.send_bytes(b"not json")
        with pytest.raises(EOFError):  # dropped without an answer
            conn.recv_bytes()
    assert serving(server["socket"])


def test_a_step_killed_with_sigkill_leaves_the_server_serving(server, tmp_path):
    started: list[int] = []

    def kill(pid: int) -> None:
        started.append(pid)
        kill_step(pid, signal.SIGKILL)

    code = run_step(server["socket"], "publish", ["--ds", "2013-01-01", "--days", "60"],
                    env={"LAKE_ROOT": str(tmp_path / "killed")}, cwd=REPO_ROOT, on_line=print, on_start=kill)
    assert code == -signal.SIGKILL
    assert _gone(started[0])
    assert warm(server, "publish", "--ds", "2013-01-03", env={"LAKE_ROOT": str(tmp_path / "after")})[0] == 0


def test_a_client_that_hangs_up_stops_its_step(server, tmp_path):
    request = {"step": "publish", "argv": ["--ds", "2013-01-01", "--days", "200"],
               "env": {"LAKE_ROOT": str(tmp_path / "lake")}, "cwd": str(REPO_ROOT)}
    with Client(str(server["socket"]), family="AF_UNIX") as conn:
        conn.send_bytes(json.dumps(request).encode())
        pid = json.loads(conn.recv_bytes())["pid"]
        assert os.getsid(pid) == pid, "the step leads its own session (its group is killable by pid)"
    assert _gone(pid), "the step outlived its client"


def test_each_request_gets_its_own_environment_and_fresh_modules(server, tmp_path):
    lake = tmp_path / "lake"
    assert warm(server, "publish", "--ds", "2013-01-01", "--feed", "schedule", env={"LAKE_ROOT": str(lake)})[0] == 0
    ingest = ("ingest", "--ds", "2013-01-01", "--feed", "schedule")

    # Settings come from the request's environment: a bad override fails that request only.
    code, out = warm(server, *ingest, env={"LAKE_ROOT": str(lake), "PIPELINE__INGEST__MAX_BAD_ROW_FRACTION": "lots"})
    assert code == 2 and "ingest.max_bad_row_fraction" in "\n".join(out), out

    # A module constant read at import (jobs.results.XCOM_FILE) follows the request's environment.
    xcom = tmp_path / "xcom" / "return.json"
    xcom.parent.mkdir()
    code, out = warm(server, *ingest, env={"LAKE_ROOT": str(lake), "PIPELINE_XCOM_FILE": str(xcom)})
    assert code == 0, out
    assert json.loads(xcom.read_text()) == parse_results("\n".join(out))
    xcom.unlink()
    assert warm(server, *ingest, env={"LAKE_ROOT": str(lake)})[0] == 0
    assert not xcom.exists(), "PIPELINE_XCOM_FILE leaked into the next request"

    # Without LAKE_ROOT a request gets the server's own; None unsets a variable of the server.
    assert warm(server, "publish", "--ds", "2013-01-04", "--feed", "weather")[0] == 0
    assert (server["server_lake"] / "landing" / "weather" / "2013-01-04.csv").is_file()
    code, out = warm(server, "publish", "--ds", "2013-01-05", "--feed", "weather",
                     env={"LAKE_ROOT": None, "PIPELINE__LAKE__ROOT": str(tmp_path / "by-setting")})
    assert code == 0, out
    assert (tmp_path / "by-setting" / "landing" / "weather" / "2013-01-05.csv").is_file()


def _gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_a_step_that_leaves_an_idle_thread_pool_still_exits():
    """MLflow's artifact repository leaves an idle ThreadPoolExecutor: a fresh interpreter stops its
    workers at exit (threading's atexit hooks), so the step process must too, or the task never ends."""
    from jobs.warm import exit_step

    pid = os.fork()
    if pid == 0:  # the step process: a pool that ran one job and idles
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="MlflowLocalArtifactRepository")
        pool.submit(time.sleep, 0.01).result()
        exit_step(7)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 7
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the step process did not exit: an idle pool worker was joined forever")
