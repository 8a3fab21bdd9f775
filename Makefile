# The two commands of the README. Both set up .venv on first use (CPU build of torch).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-all clean

$(BIN)/prunekit: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

demo: $(BIN)/prunekit
	$(BIN)/prunekit demo

test: $(BIN)/prunekit
	$(BIN)/python -m pytest -q

test-all: $(BIN)/prunekit
	$(BIN)/python -m pytest -q -m "slow or not slow"

clean:
	rm -rf $(VENV) build *.egg-info
