# Connector sync (docs/connectors.md). `make bench-sync` starts throwaway PostgreSQL and Redis, an
# embeddings-only inference API, a Celery worker and a local web site of generated pages; syncs it, changes
# 1 % of it and syncs again, OCRs generated scans, and prints one JSON object last.
#   make bench-sync [BENCH_ARGS="--pages 2000 --concurrency 8 --scans 6"]
.PHONY: bench-sync

bench-sync: $(STAMP)/venv $(STAMP)/venv-inference ocr
	@$(VPY) -m ragsite.devstack exec -- $(VPY) bench/sync.py $(BENCH_ARGS)
