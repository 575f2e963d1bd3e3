# radstream: the one entry point for humans and CI (.ci/run calls `make test`).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := requirements/constraints.txt
# What `make demo` needs (the embedded broker, ingest, deid), and everything for `make test`.
DEMO_EXTRAS := local,deid,ingest
EXTRAS := $(DEMO_EXTRAS),restructure,easyocr,kserve,postgres,s3,bench,train,dev
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed
PIP_INSTALL = $(BIN)/python -m pip install --progress-bar on --disable-pip-version-check
DEB_STAMP := .build/debian-packages.stamp
DEB_LIST := deploy/debian-packages.txt
TYPECHECK_ROOT := .build/typecheck

.PHONY: help peers-venv install debian-packages annex-e proto proto-check lint fmt type check test test-unit test-integration fuzz bench eval-deid eval-restructure train-restructure calibrate-deid demo docs lock clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-18s %s\n",$$1,$$2}'

# Two stamps: the demo's extras, and all of them. Everything installed covers the demo too;
# `make test` after `make demo` installs the rest.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@echo ">> creating $(VENV) and installing radstream with every extra (pinned by $(CONSTRAINTS))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -q --upgrade "pip>=24"
	$(PIP_INSTALL) -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	@touch $@ $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml $(CONSTRAINTS)
	@echo ">> creating $(VENV) and installing what the demo needs (pinned by $(CONSTRAINTS))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -q --upgrade "pip>=24"
	$(PIP_INSTALL) -c $(CONSTRAINTS) -e ".[$(DEMO_EXTRAS)]"
	@touch $@

install: $(STAMP) debian-packages mlserver-venv ## create .venv and install everything (idempotent)

# MLServer, the KServe v2 server the remote OCR engine's tests run against (deploy/mlserver/), in
# its own venv: it pins a fastapi that conflicts with flwr's. Rebuilt when its requirements change.
MLSERVER_VENV := .venv-mlserver
MLSERVER_REQUIREMENTS := requirements/mlserver.txt
MLSERVER_STAMP := $(MLSERVER_VENV)/.installed
$(MLSERVER_STAMP): $(MLSERVER_REQUIREMENTS)
	@echo ">> creating $(MLSERVER_VENV) for MLServer (pinned by $(MLSERVER_REQUIREMENTS))"
	@test -x $(MLSERVER_VENV)/bin/python || $(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/python -m pip install -q --disable-pip-version-check -r $(MLSERVER_REQUIREMENTS)
	@touch $@

.PHONY: mlserver-venv
mlserver-venv: $(MLSERVER_STAMP) ## the venv of MLServer for the remote OCR engine's tests

# Debian packages the project needs (one per line in deploy/debian-packages.txt);
# installed only when one is missing, so the second run costs a dpkg query.
$(DEB_STAMP): $(DEB_LIST)
	@mkdir -p $(dir $@)
	@missing=$$( { grep -vE '^\s*(#|$$)' $(DEB_LIST) || true; } | while read -r p; do \
		dpkg -s "$$p" >/dev/null 2>&1 || echo "$$p"; done); \
	if [ -n "$$missing" ]; then \
		echo ">> installing Debian packages: $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@touch $@

debian-packages: $(DEB_STAMP) ## install the Debian packages the project uses, when missing

proto: $(STAMP) ## regenerate Python code from proto/radstream/v1
	$(BIN)/python -m radstream.contracts.generate

proto-check: $(STAMP) ## fail when the generated contract code is stale
	$(BIN)/python -m radstream.contracts.generate --check

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format services tests
	$(BIN)/ruff check --fix services tests

lint: $(STAMP) ## ruff lint + format check
	$(BIN)/ruff check services tests
	$(BIN)/ruff format --check services tests

# mypy cannot follow setuptools' editable finder for the services/ -> radstream mapping,
# so it type-checks through a link tree that spells the import name.
type: $(STAMP) ## mypy --strict on services/
	@mkdir -p $(TYPECHECK_ROOT) && ln -sfn ../../services $(TYPECHECK_ROOT)/radstream
	cd $(TYPECHECK_ROOT) && MYPYPATH=. ../../$(BIN)/mypy --config-file ../../pyproject.toml -p radstream

check: lint type proto-check ## every static check CI runs

test: install check ## the whole suite: static checks, unit and integration tests (CI runs this)
	$(BIN)/pytest -p no:cacheprovider

test-unit: $(STAMP)
	$(BIN)/pytest -m "not integration"

test-integration: $(STAMP)
	$(BIN)/pytest -m integration

# The fuzz harness (tests/fuzz, docs/fuzzing.md): `make test` runs it with a small fixed budget;
# this runs FUZZ_BUDGET inputs per target from FUZZ_SEED, keeping Hypothesis' database and every
# failing input under .build/fuzz/.
FUZZ_BUDGET ?= 5000
FUZZ_SEED ?= 12
fuzz: $(STAMP) ## fuzz every parser that takes outside input (FUZZ_BUDGET inputs per target)
	FUZZ_BUDGET=$(FUZZ_BUDGET) $(BIN)/pytest -p no:cacheprovider -q tests/fuzz \
		--hypothesis-seed=$(FUZZ_SEED) --timeout=0

# presidio-image-redactor, the pixel benchmark's peer, in its own venv: it needs opencv-python,
# which cannot share a venv with the opencv-python-headless that radstream's OCR engines use.
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
$(PEERS_STAMP): requirements/bench-peers.txt
	@test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements/bench-peers.txt
	@touch $@

peers-venv: $(PEERS_STAMP) ## the benchmark peers that cannot share .venv (presidio-image-redactor)

bench: install peers-venv ## benchmarks: bus vs bare aiokafka, deid vs dicognito/deid, ingest vs Orthanc, pixels vs presidio-image-redactor
	$(BIN)/python -m tests.bench.bench_bus
	$(BIN)/python -m tests.bench.bench_deid
	$(BIN)/python -m tests.bench.bench_ingest
	$(BIN)/python -m tests.bench.bench_pixels

# Pixel de-identification measured on labelled synthetic instances (radstream.deid.eval_pixels):
# eval-deid runs `radstream deid` on the held-out split (generated once under .build/eval-deid);
# calibrate-deid recomputes the risk threshold's data from the calibration split (disjoint seeds).
EVAL_DEID_COUNT ?= 200
eval-deid: $(STAMP) ## pixel deid on synthetic held-out data: PHI box recall, non-PHI retention, leak rate (95% CI), review rate
	$(BIN)/python -m radstream.deid.eval_pixels --count $(EVAL_DEID_COUNT)

# Rad-ReStruct's labelled reports: evaluation data outside the repository (override to point elsewhere).
RADRESTRUCT_DATA ?= ../shared/data/openi/radrestruct_dev.jsonl# evaluation data outside the repository
eval-restructure: $(STAMP) ## report restructuring on Rad-ReStruct's val split (RADRESTRUCT_DATA): F1s, RESULT line
	$(BIN)/python -m radstream.restructure.eval_radrestruct $(RADRESTRUCT_DATA) --split val

train-restructure: $(STAMP) ## retrain the shipped chest radiograph classifier on Rad-ReStruct's train split (RADRESTRUCT_DATA)
	$(BIN)/python -m radstream.restructure.classifier $(RADRESTRUCT_DATA)

calibrate-deid: $(STAMP) ## recompute services/deid/pixels/calibration/rapidocr.json from the synthetic calibration split (800 instances, about 30 minutes)
	$(BIN)/python -m radstream.deid.eval_pixels --calibrate

demo: $(DEMO_STAMP) ## start a broker and every service, push sample data through, print what came out (installs only what it needs)
	$(BIN)/radstream demo

annex-e: $(STAMP) ## regenerate services/deid/_annex_e.py from the vendored PS3.15 Table E.1-1 (third_party/)
	$(BIN)/python -m radstream.deid._generate_annex_e

docs: $(STAMP) ## regenerate docs/events.md from the contracts and topic registry
	$(BIN)/python -m radstream.contracts.docs > docs/events.md

lock: ## re-pin requirements/constraints.txt from a fresh resolve
	rm -rf .build/lock-venv && $(PYTHON) -m venv .build/lock-venv
	.build/lock-venv/bin/pip install -q -e ".[$(EXTRAS)]"
	.build/lock-venv/bin/pip freeze --exclude-editable | grep -v '^radstream' > $(CONSTRAINTS)

clean: ## remove the venv and build outputs
	rm -rf $(VENV) $(MLSERVER_VENV) .build build *.egg-info .pytest_cache .mypy_cache .ruff_cache
