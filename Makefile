# The two commands a new user needs: `make demo` (whole local lifecycle) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test dev mlflow test-ui chromium lint format clean lock bench-serving bench-parse bench-batch bench-lifecycle

install: $(STAMP)

# The exact tested set of packages is in constraints.txt; `make lock` refreshes it. The project's
# own `dependencies` are only what a Databricks step task installs; the orchestrator (Dagster,
# deltalake, MLflow's server) is the `orchestrator` extra (pyproject.toml).
$(STAMP): pyproject.toml setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[orchestrator,dev]"
	touch $(STAMP)

demo: install
	$(BIN)/iris demo

# pytest exits 5 when it collected no tests: that is a failure here, never a pass. The suite runs
# on TEST_WORKERS pytest-xdist workers, each test dealt to the next free worker in the order
# tests/conftest.py sets (slowest first); a file with a fixture made once per file stays whole
# on one worker (an xdist_group, also set there), so that fixture is still made once. One more
# worker than this machine's 2 cores: a worker spends about 40% of its time waiting on the
# processes its tests start (servers, dagster dev, steps), and each worker collects the suite
# again (6-20 CPU s by machine, bench/results/tests.md); a fourth worker measured 10 s slower
# (2026-12-04).
# Bytecode is written even where the environment says not to (PYTHONDONTWRITEBYTECODE): without
# the cache every worker of every run compiles the project and rewrites the asserts of every test
# module again (18 CPU s to collect, 10 from the cache).
TEST_WORKERS ?= 3
test: install
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The Dagster UI: `iris dev` runs `dg dev` from the project root on this env's DAGSTER_HOME.
dev: install
	$(BIN)/iris dev

# The MLflow UI over this env's registry and artifacts (http://127.0.0.1:5125 for dev).
mlflow: install
	$(BIN)/iris mlflow

# The browser tests alone: `iris dev` on a tmp home, driven in headless Chromium (tests/ui).
# UI_SCREENSHOTS=DIR keeps the screenshots they take.
test-ui: install
	$(BIN)/python -m pytest tests/ui -p no:cacheprovider

# Debian's Chromium, which tests/ui drive through Playwright (Playwright's own browser download is
# never used). Needs root and apt-get; without Chromium tests/ui skip, and fail under CI
# (CI=true or 1, or Azure's TF_BUILD).
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  echo "chromium: $$(command -v chromium || command -v chromium-browser)"; \
	elif [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null && command -v chromium; \
	else \
	  echo "chromium is missing: as root, apt-get install -y chromium" >&2; exit 1; \
	fi

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^iris-assets' > constraints.txt

clean:
	$(BIN)/iris stop || true
	rm -rf .iris

# The local server against `mlflow models serve` on the same model (docs/serving.md). Installs wrk
# with apt-get when it can; exits non-zero when a target ratio is missed.
bench-serving: install
	$(BIN)/python bench/bench_serving.py

# The request parser alone, this checkout against earlier commits' (CPU per body shape, 1 to
# 1,000 records and a split); exits non-zero when any shape is over 1.10x an earlier commit's.
bench-parse: install
	$(BIN)/python bench/bench_parse.py

# Batch scoring of 1e5, 1e6 and 1e7 landing rows against the raw ceiling (docs/batch.md); exits
# non-zero when the 1e7 ratio (>= 0.5) or the step's memory bound (<= 1.5 GB) is missed.
bench-batch: install
	$(BIN)/python bench/bench_batch.py

# `iris demo` in a fresh home against one process doing the same ML work (median of 3 runs each);
# exits non-zero above 2.0x. BENCH_ARGS=--profile also profiles one demo (pyinstrument if installed).
bench-lifecycle: install
	$(BIN)/python bench/bench_lifecycle.py $(BENCH_ARGS)
