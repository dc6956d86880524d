# alignheads — set-up, main job, tests. Every target bootstraps .venv (CPU torch pinned) when needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo lab test test-fast mutants lint notebooks figures bench prepare venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0          # the CPU wheel; a GPU user installs their CUDA torch first
	$(BIN)/pip install -q -e ".[dev,lab,qwen,simulstream,tlens,whisperlivekit]"
	mkdir -p $(VENV)/share/jupyter/lab/settings  # JupyterLab opens the paired notebooks/*.py as notebooks
	echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}' \
	  > $(VENV)/share/jupyter/lab/settings/overrides.json
	$(BIN)/pip install -q --no-deps qwen-asr==0.0.6 transformer-lens==4.3.0 whisperlivekit==0.2.26  # their pins clash; see pyproject extras
	touch $(STAMP)

prepare: venv
	$(BIN)/alignheads prepare

demo: prepare
	$(BIN)/alignheads demo --out out/demo

# JupyterLab on notebooks/: open the localhost URL it prints (it carries a one-time token).
lab: venv
	$(BIN)/jupyter lab --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

lint: venv
	$(BIN)/ruff check .

test: venv lint
	$(BIN)/python -m pytest -q

test-fast: venv lint   # unit + tiny-model tiers, no real weights, subprocesses, notebooks or browser; one worker a core
	$(BIN)/python -m pytest -q -n auto -m "not slow and not notebook and not browser"

# Breaks the code on purpose, one small patch at a time, and checks that the guarding test fails (tests/mutants/run.py).
mutants: venv
	$(BIN)/python tests/mutants/run.py

# Executes every notebook on the embedded model and writes its .ipynb twin with outputs (papermill).
notebooks: prepare
	$(BIN)/python notebooks/execute.py

figures: prepare
	$(BIN)/alignheads figures --threads 1

# The README's speed, cascade, server and explorer numbers, one benchmark after the other (about an hour on a
# quiet 2-core machine). bench_policies.py, bench_a4l.py and the hour-long soak: see benchmarks/README.md.
bench: prepare
	$(BIN)/python benchmarks/bench_capture.py
	$(BIN)/python benchmarks/bench_scoring.py
	$(BIN)/python benchmarks/heads_report.py --threads 1
	$(BIN)/python benchmarks/bench_translator.py --threads 1 --capture-threads 1 2 --skip-sweep
	$(BIN)/python benchmarks/bench_explorer.py
	$(BIN)/python benchmarks/bench_decode.py --stage kernels
	$(BIN)/python benchmarks/bench_cascade.py --minutes 0
	$(BIN)/python benchmarks/bench_serve.py --threads 2

clean:
	rm -rf out .pytest_cache .ruff_cache
