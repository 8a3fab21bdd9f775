# The two commands of the README, and the checks CI runs. Everything sets up .venv on first use
# (CPU build of torch).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TYPED := build/typed

.PHONY: demo test test-slow test-all template lint typecheck clean

$(BIN)/prunekit: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

demo: $(BIN)/prunekit
	$(BIN)/prunekit demo

test: $(BIN)/prunekit
	$(BIN)/python -m pytest -q

test-slow: $(BIN)/prunekit
	$(BIN)/python -m pytest -q -m slow

test-all: $(BIN)/prunekit
	$(BIN)/python -m pytest -q -m "slow or not slow"

# the plugin template, installed as a user would, passing its own tests (one of them a whole run)
template: $(BIN)/prunekit
	$(BIN)/pip install --quiet --no-deps --no-build-isolation ./examples/plugin-template
	cd examples/plugin-template && $(CURDIR)/$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(BIN)/prunekit typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy sees core/ and plugins/ under the names they install as: prunekit, prunekit.plugins
typecheck: $(BIN)/prunekit
	rm -rf $(TYPED) && mkdir -p $(TYPED)/prunekit
	ln -s $(CURDIR)/core/* $(TYPED)/prunekit/
	ln -s $(CURDIR)/plugins $(TYPED)/prunekit/plugins
	$(BIN)/mypy $(TYPED)/prunekit benchmarks

clean:
	rm -rf $(VENV) build *.egg-info examples/plugin-template/build
