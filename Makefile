# fr3e: every command a user needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The environment is rebuilt when pyproject.toml or constraints.txt change (stamp keyed on their hash).
ENV_HASH := $(shell cat pyproject.toml constraints.txt 2>/dev/null | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(ENV_HASH)
# Profile: `tiny` (CPU, embedded world) or `paper` (Qwen2.5 on a GPU node). Default: paper when CUDA GPUs
# are visible, tiny otherwise; the choice is printed by the reproduce driver.
PROFILE ?= auto
NOTEBOOKS := walkthrough table1 entropy length advantage all_right

.DEFAULT_GOAL := help
.PHONY: help env test unit lint nbval reproduce smoke lab bench plan-table1 gpu-smoke clean-runs rehearse-table1 \
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

lint: $(STAMP)  ## ruff over the library, CLIs and tests
	$(VENV)/bin/ruff check fr3e reproduce tests

unit: $(STAMP)  ## unit tests only (maths, config, tiny world), no smoke runs
	$(VENV)/bin/pytest -q -m "not slow" tests

nbval: $(STAMP)  ## run every notebook with its smoke defaults under nbval
	$(VENV)/bin/pytest -q --nbval-lax -p no:cacheprovider notebooks/

test: $(STAMP)  ## ruff + unit tests + smoke runs + nbval (what CI runs)
	$(VENV)/bin/ruff check fr3e reproduce tests
	$(VENV)/bin/pytest -q tests
	$(VENV)/bin/pytest -q --nbval-lax -p no:cacheprovider notebooks/

reproduce: $(STAMP)  ## run every notebook in order with papermill (tiny profile on CPU), write results/
	$(PY) -m fr3e.reproduce --profile $(PROFILE) all

$(addprefix reproduce-,$(NOTEBOOKS)): reproduce-%: $(STAMP)  ## (one per artefact) e.g. make reproduce-table1 PROFILE=tiny|paper
	$(PY) -m fr3e.reproduce --profile $(PROFILE) $*

smoke: $(STAMP)  ## every notebook with smoke parameters (fast, results to runs/smoke)
	$(PY) -m fr3e.reproduce --profile tiny --smoke all

lab: $(STAMP)  ## open JupyterLab on notebooks/
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)  ## engine tok/s, FR3E and GRPO++ step time by phase, ratio to TRL GRPOTrainer
	OMP_WAIT_POLICY=PASSIVE $(PY) reproduce/bench.py

rehearse-table1: $(STAMP)  ## CPU dress rehearsal of reproduce-table1 PROFILE=paper: 2-process FSDP/DDP, kill+resume, notebook (~10 min)
	OMP_NUM_THREADS=1 $(PY) -m fr3e.rehearsal --dir runs/rehearsal

plan-table1: $(STAMP)  ## print the paper-profile Table 1 plan: runs, GPUs, tokens, GPU-hours, disk
	$(PY) -m fr3e.plan

clean-runs:  ## delete runs/ (training runs and caches); results/ is kept
	rm -rf runs

gpu-smoke: $(STAMP)  ## paper-profile plumbing on a GPU: random Qwen2 model, few FR3E steps, vLLM if installed
	$(PY) -m fr3e.smoke --out runs/gpu-smoke
