# Two commands on a fresh machine: `make repro` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
PLOTS_TEMPLATE := .dvc/plots/offline.html
QUEUE_LINKS := .dvc/tmp/exps/.queue-links
# DVC must not phone home (no network here) and must not prompt.
export DVC_NO_ANALYTICS := 1
export PYTHONDONTWRITEBYTECODE := 1
# Stage commands say `python`: make it the venv's.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup repro report compare plots serve test test-fast lint bench clean

setup: $(STAMP) $(PLOTS_TEMPLATE) $(QUEUE_LINKS)
	@grep -qs html_template .dvc/config.local || $(BIN)/dvc config --local plots.html_template plots/offline.html

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

# `dvc plots show` offline: DVC's page template with vega inlined, named in .dvc/config.local
# (see pipeline/plots.py; without it DVC draws its own page, which loads vega from a CDN).
$(PLOTS_TEMPLATE): $(STAMP) pipeline/plots.py
	$(BIN)/python -m pipeline.plots

# Queued experiments run in a copy of the repo under .dvc/tmp/exps/: links there let DVC find
# the presets' download.path beside the repo (../shared/...; see pipeline/download.py).
$(QUEUE_LINKS): $(STAMP) params.yaml $(wildcard configs/*.yaml)
	$(BIN)/python -m pipeline.download --queue-links
	touch $@

repro: setup
	$(BIN)/dvc repro
	$(BIN)/python -m pipeline.report

report: setup
	$(BIN)/python -m pipeline.report

# The experiments side by side, scores first (README "Experiments").
compare: setup
	$(BIN)/python -m pipeline.compare

plots: setup
	$(BIN)/dvc plots show

# Draw and watch the trained ensemble guess (docs/serve.md), after `make repro`; on 127.0.0.1:8000
# unless SERVE_ARGS says otherwise (e.g. SERVE_ARGS="--port 9000").
serve: setup
	$(BIN)/python -m pipeline.serve $(SERVE_ARGS)

# The 10 slowest tests are listed at the end: the suite's budget is 10 minutes on 2 cores.
test: setup lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=10

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check pipeline tests benchmarks
	$(BIN)/ruff format --check pipeline tests benchmarks

bench: setup
	$(BIN)/python -m benchmarks

# Removes what `dvc repro` rebuilds. Keeps data/cache (the Kaggle downloads) and the committed
# baseline metrics and reports (restore those with `git checkout metrics dvclive reports`).
clean:
	rm -rf data/raw data/processed models checkpoints dvc_plots submissions/*.csv
