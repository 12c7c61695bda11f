# make repro : create .venv, install, run the pipeline (dvc repro)
# make test  : create .venv, install, run the test suite in two processes (README's timings table)
# make test-pipelines: the three tests that run several whole tiny pipelines each (a queued sweep and
#                 its bench, the pipeline twice from scratch, a DVC remote; CI runs it too)
# make test-fast: the unit tests only (not the slow end-to-end ones; 4.5 min on a 2-core AVX2 CPU, over the 2 min aimed at)
# make lint : ruff (pyflakes, isort, pycodestyle at 120 columns; pyproject.toml); make test runs it first
# make test-archs: every standard architecture through the whole pipeline, and the channel-group and
#                 folding checks of the four not in `make test` (~20 min; CI runs it too)
# make params: regenerate params.yaml from conf/ (what DVC's Hydra composition writes)
# make readme: rewrite README.md's generated blocks from reports/ (a test checks they are current)
# make lock  : rewrite requirements.lock (exact versions of every package) from .venv
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
# Stage commands in dvc.yaml call `python`: it must be the venv's.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: repro test test-fast test-pipelines test-archs lint params readme lock clean

# uv installs what pip would, 2x faster (a fresh clone: 38 s with uv's download cache empty, against
# pip's 75-82 s with its cache warm); --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE
# is set (this VM, CI) nothing else writes .pyc files, and every stage and evaluate worker compiled
# TensorFlow's sources again (a fresh clone's pipeline took 1.5x as long). requirements.lock pins
# every package to the versions the committed reports were made with (make lock rewrites it).
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv==0.13.*'
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c requirements.lock -e '.[test]'
	touch $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -n 2 --dist worksteal -m "not archs and not pipelines" --durations=40

test-pipelines: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist worksteal -m pipelines --durations=5

test-archs: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m archs

test-fast: lint
	$(BIN)/python -m pytest -m "not slow and not archs"

params: $(STAMP)
	$(BIN)/python -c "import os; from dvc.utils.hydra import compose_and_dump as c; c('params.yaml', os.path.abspath('conf'), None, 'config', '', [])"

readme: $(STAMP)
	$(BIN)/python tools/readme.py

lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^uv==' > requirements.lock

clean:
	rm -rf $(VENV)
