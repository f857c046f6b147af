# The two commands a new user needs: `make demo` (whole local lifecycle) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test dev lint format clean lock

install: $(STAMP)

# The exact tested set of packages is in constraints.txt; `make lock` refreshes it.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/iris demo

# pytest exits 5 when it collected no tests: that is a failure here, never a pass.
test: install
	$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

dev: install
	$(BIN)/iris dev

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^iris-assets' > constraints.txt

clean:
	$(BIN)/iris stop || true
	rm -rf .iris
