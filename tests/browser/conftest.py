"""Browser tests: Playwright (Python) driving Debian's chromium against a running local stack.

The stack (tests/integration/stack.py: the demo's own Airflow and MLflow) serves a lake and a registry
that the real steps filled (tests/unit/conftest.py: `served_model`, `health_lake`). One stack and one
logged-in browser page serve the whole module. Screenshots go to docs/img/, where README shows them.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.stack import REPO_ROOT
from tests.integration.stack import IntegrationStack
from tests.smtp_inbox import start_inbox
from tests.unit.conftest import health_lake, served_model, spark  # noqa: F401 - fixtures used here

CHROMIUM = "/usr/bin/chromium"
ONCALL = "oncall@pipeline.test"
SCREENSHOTS = REPO_ROOT / "docs" / "img"
# The stack's steps train on the few days the test lake holds (Jan 1-8 of 2013). A two-epoch torch model on
# five days is not a model the real gate would promote; the approval flow is under test here, so the gate's
# margins are wide (the gate's own decisions are tested in tests/unit/test_gate.py).
STACK_ENV = {"PIPELINE__TRAINING__VALIDATION_DAYS": "2", "PIPELINE__TRAINING__HOLDOUT_DAYS": "2",
             "PIPELINE__GATE__AUC_FLOOR": "0.5", "PIPELINE__GATE__MAX_AUC_DROP_VS_CHAMPION": "0.5",
             "PIPELINE__GATE__MAX_SLICE_AUC_DROP": "0.5", "PIPELINE__GATE__MAX_AUC_GAP_TO_BASELINE": "0.5"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_stack(served_model, spark, tmp_path_factory) -> Iterator[dict]:  # noqa: F811
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)")
    root = tmp_path_factory.mktemp("browser")
    data = health_lake(served_model, root, spark)
    inbox, smtp = start_inbox()  # a real SMTP receiver: the pipeline's notifications land here
    notify = {"PIPELINE__NOTIFICATIONS__ENABLED": "true", "PIPELINE__NOTIFICATIONS__TO": f"[{ONCALL}]",
              "AIRFLOW_CONN_SMTP_DEFAULT": inbox.connection_json()}
    try:
        # Spark Connect and the warm step runner, as `make demo` runs: each training of these tests takes
        # seconds, not a JVM's and the libraries' start per step.
        with IntegrationStack(root / "stack", lake_root=data["lake"].root, mlflow_backend_uri=data["tracking_uri"],
                              extra_env={**STACK_ENV, **notify}, spark_connect=True, warm_runner=True) as stack:
            password = json.loads(stack.config.passwords_file.read_text())["admin"]
            yield {**data, "stack": stack, "url": stack.config.airflow_url, "password": password,
                   "client": stack.client(), "inbox": inbox}
    finally:
        smtp.stop()


@pytest.fixture(scope="module")
def page(browser_stack):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)  # a loaded 2-core machine renders the UI slowly
        login(page, browser_stack["url"], "admin", browser_stack["password"])
        yield page
        context.close()
        browser.close()


def login(page, url: str, user: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")


def screenshot(page, name: str) -> Path:
    """A screenshot for README (docs/img/{name}.png)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path

