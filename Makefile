# memgrpc: `make serve` and `make test` are the front door; both set themselves up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
UV_VERSION := 0.13.10
UV_VENV := .uv
UV     := $(UV_VENV)/bin/uv
export UV_PYTHON_DOWNLOADS := never
ADDR   ?= 127.0.0.1:50051
DATA   ?= ./data

.PHONY: setup lock upgrade proto proto-check lint test serve bench bench-scale bench-peers clean

setup: $(STAMP)

# uv itself, pinned exactly, in a venv of its own (`uv sync` keeps .venv to the lock, exactly)
$(UV):
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "memgrpc needs Python 3.11+"'
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install -q uv==$(UV_VERSION)

# .venv holds exactly what uv.lock pins (runtime + dev), never a newer release
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --extra dev --python $(PYTHON)
	touch $(STAMP)

# after editing dependencies in pyproject.toml: re-resolve, keeping every other pin
lock: $(UV)
	$(UV) lock

# upgrade on purpose: every dependency to its newest allowed release (then `make proto test`)
upgrade: $(UV)
	$(UV) lock --upgrade

proto: setup
	PYTHON=$(PY) scripts/gen_protos.sh

proto-check: setup
	PYTHON=$(PY) scripts/check_protos.sh

lint: setup
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/buf lint

test: lint proto-check
	$(PY) -m pytest

serve: setup
	$(VENV)/bin/memgrpc serve --addr $(ADDR) --data $(DATA)

bench: setup
	$(PY) scripts/bench_memory.py

# search latency at 10k/100k/1M memories, with and without the ANN index (~45 min; writes the plot)
bench-scale: setup
	$(PY) scripts/bench_scale.py --write

# memgrpc vs a Chroma server (chromadb in its own venv, .venv-peers, made on first use)
bench-peers: setup
	test -x .venv-peers/bin/chroma || ($(PYTHON) -m venv .venv-peers && \
		.venv-peers/bin/python -m pip install -q 'chromadb==1.5.9')
	$(PY) scripts/bench_peers.py --write

clean:
	rm -rf $(VENV) $(UV_VENV) .pytest_cache .mypy_cache .ruff_cache
