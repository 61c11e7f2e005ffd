# Two commands do all the set-up: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export PIPELINE_ENV ?= local

# checkov (Kubernetes and Dockerfile policies, run by the tests) lives in a venv of its own:
# its pins conflict with Airflow's. An exact version, reinstalled when it changes.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := $(VENV)/tools/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

# The browser tests drive Debian's chromium through Playwright (which cannot download browsers here).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: venv checkov chromium demo replay load stop reset test test-unit test-dags test-integration test-browser test-faults bench lock clean

venv: $(STAMP)

# The venv is rebuilt only when the pins change, so a second `make` is quick.
$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing pinned dependencies into $(VENV) (a few minutes, once)"
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	@# The pipeline package itself, editable: its dependencies are the pins above.
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

checkov: $(CHECKOV_STAMP)

$(CHECKOV_STAMP):
	@rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	@echo "installing checkov $(CHECKOV_VERSION) into $(CHECKOV_VENV) (once)"
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==$(CHECKOV_VERSION) 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	@touch $@

chromium: $(CHROMIUM)

$(CHROMIUM):
	@echo "installing Debian's chromium for the browser tests (once)"
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium

demo: $(STAMP)
	$(PY) -m scripts.demo $(if $(DEMO_START),--start $(DEMO_START))

# A year of 2013 through the DAGs (its own stack state in .replay/); resumes where it stopped.
replay: $(STAMP)
	$(PY) -m scripts.replay $(if $(REPLAY_START),--start $(REPLAY_START)) $(if $(REPLAY_END),--end $(REPLAY_END)) $(if $(REPLAY_STRETCH),--stretch $(REPLAY_STRETCH))

# A 30-day catch-up on the production configuration (PostgreSQL metadata and MLflow store, LocalExecutor
# parallelism 4): failed tasks, duplicate rows, time and memory (README). Too long for `make test`; needs
# PostgreSQL on 127.0.0.1:5432. LOAD_START / LOAD_DAYS pick the window.
load: $(STAMP)
	$(PY) -m scripts.load $(if $(LOAD_START),--start $(LOAD_START)) $(if $(LOAD_DAYS),--days $(LOAD_DAYS))

stop:
	@test -x $(PY) && $(PY) -m scripts.stack stop || true

# The fault tests (tests/faults/, marker `faults`) have their own target: too long for the suite's budget.
test: $(STAMP) $(CHECKOV_STAMP) $(CHROMIUM)
	$(PY) -m pytest -m "not faults"

test-unit: $(STAMP) $(CHECKOV_STAMP)
	$(PY) -m pytest tests/unit

test-dags: $(STAMP) $(CHECKOV_STAMP)
	$(PY) -m pytest tests/dags

test-integration: $(STAMP)
	$(PY) -m pytest -m "not faults" tests/integration

test-browser: $(STAMP) $(CHROMIUM)
	$(PY) -m pytest tests/browser

# Steps killed mid-commit, MLflow, S3 and Spark Connect stopped mid-step, ten training triggers (README).
test-faults: $(STAMP)
	$(PY) -m pytest -m faults tests/faults

bench: $(STAMP)
	$(PY) -m bench.run_all

# Re-resolve the full dependency set after changing requirements.txt.
lock: $(STAMP)
	$(PY) -m pip freeze --all --exclude-editable | grep -viE '^(pip|wheel)==' > constraints.txt

# The demo's state (Airflow home, MLflow, lake), the replay's and the load run's, not the venv: the next `make demo` starts afresh.
reset: stop
	rm -rf .airflow .mlflow data .replay .load

clean: reset
	rm -rf $(VENV)
