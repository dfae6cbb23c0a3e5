# The token API (docs/api.md). `make bench-api` starts throwaway PostgreSQL and Redis and the web app under
# uvicorn (its model the tests' scripted inference API), then times the same cached answer through the ask page
# and through /api/v1/ask; the last line it prints is one JSON object.
#   make bench-api [BENCH_ARGS="--rounds 300"]
.PHONY: bench-api

bench-api: $(STAMP)/venv
	@$(VPY) -m ragsite.devstack exec -- $(VPY) bench/api_overhead.py $(BENCH_ARGS)
