# crimetag: `make serve` and `make test` work on a fresh clone with Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# The store `make serve` uses unless CRIMETAG_MODEL_DIR is already set: inside the project.
export CRIMETAG_MODEL_DIR ?= $(CURDIR)/var/models

.PHONY: install serve test bench bench-smoke reliability corpus-check clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "crimetag needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

serve: install
	$(BIN)/crimetag train --if-missing
	$(BIN)/crimetag serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest -q

corpus-check: install
	$(BIN)/python -m training.corpus_check

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
