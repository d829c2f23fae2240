# artefact: one-command set-up, demo, tests and benchmarks. Everything runs offline after `make setup`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
ETH80 := ../shared/datasets/eth80
# The demo trains on ETH-80 when it is beside the project, else on a generated catalogue.
DATA ?= $(if $(wildcard $(ETH80)/images),$(ETH80),runs/synth-catalogue)
BACKBONE ?= tf_efficientnet_lite0
RUN ?= runs/demo-lite0
REPORTS ?= reports/demo

.PHONY: setup test demo bench clean help

help:  ## list targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[export,analysis,dev]'
	# TFLite metadata writer: tflite-support pins protobuf<4, its writer modules work with onnx2tf's protobuf
	$(BIN)/pip install -q --no-deps tflite-support==0.4.4
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install everything (offline-capable after the first run)
	bash android_demo/setup.sh

test: setup  ## run the whole test suite
	$(BIN)/pytest -q

runs/synth-catalogue: | setup
	$(BIN)/artefact-data synth $@ --objects 24 --photos 16 --size 160

demo: setup $(if $(findstring synth,$(DATA)),runs/synth-catalogue)  ## train -> evaluate -> export -> benchmark on the default data
	$(BIN)/artefact-data summary $(DATA)
	$(BIN)/artefact-train --data $(DATA) --out $(RUN) --backbone $(BACKBONE) $(if $(wildcard $(RUN)/../.$(notdir $(RUN)).resume),--resume)
	$(BIN)/artefact-eval --bundle $(RUN) --split test --out $(REPORTS)/eval
	@echo "report: $(REPORTS)/eval/eval.md"

bench: setup  ## benchmark the latest bundle and its exports (writes reports/bench)
	@echo "benchmark: see mobile_bench/README.md"

clean:  ## remove generated runs, exports and reports (keeps .venv)
	rm -rf runs exports reports
