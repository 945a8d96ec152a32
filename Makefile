# Two set-up commands (README "Quick start"): `make demo` and `make test`.
# Both create the virtual environment at .venv/ (newest Airflow 3); `make test` also creates
# .venv-airflow2/ (Airflow 2.10) and .venv-floors/ (every dependency at its lowest declared version) and
# runs the whole suite in each, after `make lint` (ruff).

PYTHON ?= python3
VENV := .venv
VENV2 := .venv-airflow2
VENV_FLOORS := .venv-floors
AIRFLOW3_VERSION ?= 3.3.2
AIRFLOW2_VERSION ?= 2.10.5
UV := $(VENV)/bin/uv
PYTEST_ARGS ?= -q -ra

.PHONY: demo lint test test-airflow3 test-airflow2 test-floors bench emulator clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(UV) pip install --quiet --python $(VENV)/bin/python -e '.[dev]' 'apache-airflow==$(AIRFLOW3_VERSION)'
	touch $@

$(VENV2)/.installed: pyproject.toml $(VENV)/.installed
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV2)
	$(UV) pip install --quiet --python $(VENV2)/bin/python -e '.[dev]' 'apache-airflow==$(AIRFLOW2_VERSION)'
	touch $@

# Lowest-versions job: every direct dependency at the lowest version pyproject.toml allows (uv's
# lowest-direct resolution: Airflow 2.10.x, dashscope, openai, pyrate-limiter, tenacity, Pillow, ...).
$(VENV_FLOORS)/.installed: pyproject.toml $(VENV)/.installed
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV_FLOORS)
	$(UV) pip install --quiet --python $(VENV_FLOORS)/bin/python --resolution lowest-direct -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/python scripts/demo.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

test: lint test-airflow3 test-airflow2 test-floors

test-airflow3: $(VENV)/.installed
	@echo "=== test suite on Airflow $(AIRFLOW3_VERSION) ==="
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-airflow2: $(VENV2)/.installed
	@echo "=== test suite on Airflow $(AIRFLOW2_VERSION) ==="
	$(VENV2)/bin/python -m pytest $(PYTEST_ARGS)

test-floors: $(VENV_FLOORS)/.installed
	@echo "=== test suite at the lowest declared versions ==="
	$(VENV_FLOORS)/bin/python -m pip list 2>/dev/null | grep -iE '^(apache-airflow|dashscope|openai|pyrate-limiter|tenacity|pillow) ' || true
	$(VENV_FLOORS)/bin/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/prep.py
	$(VENV)/bin/python bench/throughput.py
	$(VENV)/bin/python bench/memory.py

emulator: $(VENV)/.installed
	$(VENV)/bin/python -m airflow_provider_qwenocr.emulator --host 127.0.0.1 --port 8765

clean:
	rm -rf $(VENV) $(VENV2) $(VENV_FLOORS) .demo .pytest_cache
