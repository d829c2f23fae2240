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

.PHONY: setup test demo bench openset protocol clean help

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

# Training settings of the measured runs (2-core CPU budget): the study's Adam at lr 1e-4 for 10 epochs.
TRAIN_ARGS ?= --lr 1e-4 --epochs 10 --patience 4
EXPORTS ?= exports/$(notdir $(RUN))

runs/synth-catalogue: | setup
	$(BIN)/artefact-data synth $@ --objects 24 --photos 16 --size 160

$(RUN)/bundle.json: | setup $(if $(findstring synth,$(DATA)),runs/synth-catalogue)
	$(BIN)/artefact-data summary $(DATA)
	$(BIN)/artefact-train --data $(DATA) --out $(RUN) --backbone $(BACKBONE) $(TRAIN_ARGS) \
		$(if $(wildcard $(dir $(RUN)).$(notdir $(RUN)).resume/state.pt),--resume)

demo: setup $(RUN)/bundle.json  ## train (resumable, skipped when done) -> evaluate -> export -> benchmark; prints the report paths
	$(BIN)/artefact-eval --bundle $(RUN) --split test --out $(REPORTS)/eval --analysis -q
	$(BIN)/artefact-export --bundle $(RUN) --target all --out $(EXPORTS) --check --quiet
	$(BIN)/artefact-bench --bundle $(RUN) --exports $(EXPORTS) --timm tf_efficientnet_b3@300 \
		--threads 1,2 --max-queries 680 --field --out $(REPORTS)/bench --check mobile_bench/thresholds.toml -q
	@echo "reports: $(REPORTS)/eval/eval.html  $(EXPORTS)/parity.md  $(REPORTS)/bench/bench.html"

bench: setup  ## the benchmark matrix on the latest bundle and its exports (reports/bench)
	$(BIN)/artefact-bench --bundle $$(cat runs/LATEST) --exports exports/$$(basename $$(cat runs/LATEST)) \
		--timm tf_efficientnet_b3@300 --timm tf_efficientnet_b6@528 --threads 1,2 --out reports/bench

OPENSET ?= runs/openset
$(OPENSET)/lite0-known/bundle.json: | setup $(if $(findstring synth,$(DATA)),runs/synth-catalogue)
	$(BIN)/artefact-openset holdout --data $(DATA) --out $(OPENSET)
	$(BIN)/artefact-train --data $(OPENSET)/known.csv --out $(OPENSET)/lite0-known $(TRAIN_ARGS) --no-mark-latest \
		$(if $(wildcard $(OPENSET)/.lite0-known.resume/state.pt),--resume)

openset: setup $(OPENSET)/lite0-known/bundle.json  ## hold out 20% of the objects, train on the rest, measure enrolment/rejection/fusion
	$(BIN)/artefact-openset measure --bundle $(OPENSET)/lite0-known --manifest $(OPENSET)/all.csv --out reports/openset

protocol: setup  ## the museum-protocol benchmark: Lite0/1/2 x seeds 0,1,2 (long: hours on 2 cores)
	$(BIN)/python -m artefact_train.protocol_bench --data $(DATA) --backbone tf_efficientnet_lite0 \
		--backbone tf_efficientnet_lite1 --backbone tf_efficientnet_lite2 --seed 0 --seed 1 --seed 2 $(TRAIN_ARGS)

clean:  ## remove generated runs, exports and reports (keeps .venv)
	rm -rf runs exports reports
