# Answer quality (docs/asking.md). `make bench-answers` starts throwaway PostgreSQL and Redis and the inference
# API (llama.cpp, the CPU default chat model), ingests ../shared/eval/answers-dev/docs, asks its questions
# through the answer service and prints one JSON object last.
#   make bench-answers [BENCH_ARGS="--questions FILE --docs DIR"]
.PHONY: bench-answers

bench-answers: $(STAMP)/venv $(STAMP)/venv-inference $(STAMP)/engine-llamacpp $(STAMP)/model-$(CHAT_MODEL)
	@$(VPY) -m ragsite.devstack exec -- $(VPY) bench/answers.py $(BENCH_ARGS)
