# The ask page under load (docs/web_load.md). `make bench-web` starts throwaway PostgreSQL and Redis, the
# inference API (llama.cpp, the CPU default chat model) and the web app under uvicorn, ingests the answers-dev
# documents, then 10,000 logged-in clients ask at once (a Zipf mix of real questions, 30 % unique; --unique:
# all differ); the last line it prints is one JSON object.
#   make bench-web [BENCH_ARGS="--clients 1000"] [BENCH_ARGS="--unique"]
.PHONY: bench-web

bench-web: $(STAMP)/venv $(STAMP)/venv-inference $(STAMP)/engine-llamacpp $(STAMP)/model-$(CHAT_MODEL)
	@$(VPY) -m ragsite.devstack exec -- $(VPY) bench/web_load.py $(BENCH_ARGS)
