# Retrieval quality and speed (docs/retrieval.md). Each target starts throwaway PostgreSQL and an
# embeddings-only inference API, runs, stops them, and prints one JSON object as its last line.
#   make evaluate DATASET=/path/to/beir-dataset MODE=keyword|dense|hybrid|baseline [K=10] [QUESTIONS=N]
#   make bench-retrieval [BENCH_ARGS="--chunks 100000"]
MODE ?= hybrid
K ?= 10
# Loading a corpus is bound by the embedding model, and nothing else runs beside it: give it every core
# (python-faq loads in about 13 minutes on 2 cores instead of 35 on one).
EVALUATE_TORCH_THREADS ?= $(shell nproc)
RETRIEVAL_STACK = $(VPY) -m ragsite.devstack exec -- $(VPY) bench/with_inference.py

.PHONY: evaluate bench-retrieval

# QUESTIONS=N first generates questions for N chunks of the loaded corpus with the CPU chat model and
# evaluates with them as document expansion (manage.py generate_questions; docs/retrieval.md).
QUESTIONS ?=
evaluate: $(STAMP)/venv $(STAMP)/venv-inference $(if $(QUESTIONS),$(STAMP)/engine-llamacpp $(STAMP)/model-$(CHAT_MODEL))
	@test -n "$(DATASET)" || { echo "usage: make evaluate DATASET=dir MODE=keyword|dense|hybrid|baseline" >&2; exit 2; }
	@$(if $(QUESTIONS),EVALUATE_CHAT_ENGINE=llamacpp) INFERENCE_TORCH_THREADS=$(EVALUATE_TORCH_THREADS) \
		$(RETRIEVAL_STACK) $(VPY) manage.py evaluate --dataset "$(DATASET)" --mode $(MODE) --k $(K) --json \
		$(if $(QUESTIONS),--generate-questions $(QUESTIONS))

bench-retrieval: $(STAMP)/venv $(STAMP)/venv-inference
	@$(RETRIEVAL_STACK) $(VPY) bench/retrieval.py $(BENCH_ARGS)

# The second public retrieval set (evaluation/debian_faq.py): the Debian FAQ's questions and answers, from
# Debian's `debian-faq` package (apt is reachable wherever the project is installed). Then:
#   make evaluate DATASET=.data/eval/debian-faq MODE=keyword|dense|hybrid
DEBIAN_FAQ = .data/eval/debian-faq
DEBIAN_FAQ_PACKAGE = .data/eval/debian-faq-package

.PHONY: debian-faq
debian-faq: $(DEBIAN_FAQ)/qrels/test.tsv

$(DEBIAN_FAQ)/qrels/test.tsv: evaluation/debian_faq.py $(STAMP)/venv
	@rm -rf $(DEBIAN_FAQ_PACKAGE) && mkdir -p $(DEBIAN_FAQ_PACKAGE)
	@cd $(DEBIAN_FAQ_PACKAGE) && { apt-get download -q debian-faq || { apt-get update -qq && apt-get download -q debian-faq; }; }
	@dpkg-deb -x $(DEBIAN_FAQ_PACKAGE)/debian-faq_*.deb $(DEBIAN_FAQ_PACKAGE)/root
	$(VPY) -m evaluation.debian_faq $(DEBIAN_FAQ_PACKAGE)/root/usr/share/doc/debian/FAQ $(DEBIAN_FAQ)
