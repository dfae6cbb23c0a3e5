# The inference API (inference/, docs/inference.md). Its tests start the real service from .venv-inference.
# `make bench-inference` is the 10,000-connection load benchmark; it also serves the same model with
# infinity-emb for comparison, which pins transformers 4.x and so gets a venv of its own.
INFINITY_VENV := .venv-infinity
# Its optimum engine (ONNX Runtime; what its documentation recommends on CPU) needs optimum 1.x: 0.0.78 hands
# optimum 2.x an absolute ONNX path that it refuses, and optimum 1.x's BetterTransformer import needs
# transformers < 4.49; infinity-emb wants numpy 1.x, so onnxruntime, pyarrow and datasets are held to theirs.
INFINITY_PACKAGES := torch==2.13.0 "infinity-emb[server,torch,optimum]==0.0.78" "optimum[onnxruntime]==1.24.0" \
	transformers==4.48.3 "numpy<2" "onnxruntime<1.21" "pyarrow<19" "datasets<4"
BENCH_INFERENCE_ARGS ?=

TEST_PREREQS += $(STAMP)/venv-inference

$(STAMP)/venv-infinity: mk/inference.mk
	@mkdir -p $(STAMP)
	@test -x $(INFINITY_VENV)/bin/python || $(PYTHON) -m venv $(INFINITY_VENV)
	$(INFINITY_VENV)/bin/python -m pip install -q $(INFINITY_PACKAGES)
	@touch $@

.PHONY: bench-inference
# Starts and stops every server it measures; the last line it prints is one JSON object.
bench-inference: $(STAMP)/venv-inference
	@$(MAKE) --no-print-directory $(STAMP)/venv-infinity || \
		echo "bench-inference: infinity-emb could not be installed; it is reported as null" >&2
	$(MLPY) bench/inference_load.py $(BENCH_INFERENCE_ARGS)
