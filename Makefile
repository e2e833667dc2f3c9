# The two commands of the README: `make run` and `make test`. Each does all the set-up on a fresh
# machine (virtual environment, torch, the package with its extras, Debian libraries) and skips what is
# already installed on the next call.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU wheel of this version is available locally; any other torch requirement would pull gigabytes of
# CUDA packages. A torch already importable by $(PYTHON) (a CUDA build on a GPU machine) is reused.
TORCH_VERSION ?= 2.13.0
EXTRAS ?= dev,dmc,atari,box2d,vizdoom,ray,highway,fetch,panda,pyflyt
# PyFlyt pins numpy<2 but runs on numpy 2: with the pyflyt extra (its real dependencies) it is installed
# on its own, without dependencies, so numpy is not downgraded.
PYFLYT_VERSION ?= 0.29.0
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
PYTEST_ARGS ?=

.PHONY: setup run test test-all lint format bench clean

setup: $(STAMP) $(VENV)/.system-deps

$(PY):
	@if $(PYTHON) -c "import torch" 2>/dev/null; then \
		echo "reusing the torch of $(PYTHON) (system site packages)"; \
		$(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
		$(PYTHON) -m venv $(VENV); \
	fi

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	$(if $(findstring pyflyt,$(EXTRAS)),$(PY) -m pip install --quiet --no-deps PyFlyt==$(PYFLYT_VERSION))
	@touch $@

$(VENV)/.system-deps: scripts/system-deps.sh | $(PY)
	bash scripts/system-deps.sh
	@touch $@

run: setup
	$(VENV)/bin/dreamworld train --algo dreamerv3 --preset classic --env gym/CartPole-v1 \
		--steps 6000 --logdir runs/cartpole-dreamerv3

test: setup
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

bench: setup
	$(PY) benchmarks/envs.py
	$(PY) benchmarks/throughput.py --sizes small --threads 1
	$(PY) benchmarks/throughput.py --sizes small --threads 2

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .mypy_cache
