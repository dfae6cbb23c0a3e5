# Ingestion (docs/ingest.md). `make bench-ingest` starts throwaway PostgreSQL and Redis, an embeddings-only
# inference API and a Celery worker, ingests a fixed corpus end to end, and prints one JSON object last.
#   make bench-ingest [BENCH_ARGS="--documents 200 --concurrency 8"]
.PHONY: bench-ingest

bench-ingest: $(STAMP)/venv $(STAMP)/venv-inference
	@$(VPY) -m ragsite.devstack exec -- $(VPY) bench/ingest.py $(BENCH_ARGS)
