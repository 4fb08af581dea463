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
	$(BIN)/python -m pip install --quiet -e '.[test,accurate]'
	@touch $@

serve: install
	$(BIN)/crimetag train --if-missing
	$(BIN)/crimetag serve --host $(HOST) --port $(PORT)

# The tests also smoke-run bench/gva.py's comparison with fastText, so they install it too.
$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	@touch $@

test: install $(VENV)/.bench-installed
	$(BIN)/python -m pytest -q

# Benchmarks (figures in bench/README.md): fastText is a benchmark-only dependency.
BENCH_OUT ?= bench/out
bench: install $(VENV)/.bench-installed
	$(BIN)/python bench/gva.py --keep-store $(BENCH_OUT)/store --out $(BENCH_OUT)
	$(BIN)/python bench/http.py --model-dir $(BENCH_OUT)/store --out $(BENCH_OUT)
	$(BIN)/python bench/memory.py --model-dir $(BENCH_OUT)/store --out $(BENCH_OUT)
	$(BIN)/python bench/scaling.py --out $(BENCH_OUT)

bench-smoke: install $(VENV)/.bench-installed
	$(BIN)/python -m pytest -q tests/test_bench_smoke.py

corpus-check: install
	$(BIN)/python -m training.corpus_check

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis

# Reliability: fault injection, model signing and a soak under load (results in docs/RELIABILITY.md).
# Every script prints its table; the target fails if any check in any script failed.
SOAK_DURATION ?= 60
SOAK_CONNECTIONS ?= 32
reliability: install
	@status=0; \
	$(BIN)/python reliability/faults.py || status=1; \
	$(BIN)/python reliability/signing.py || status=1; \
	$(BIN)/python reliability/soak.py --duration $(SOAK_DURATION) --connections $(SOAK_CONNECTIONS) || status=1; \
	exit $$status
