# Retriever fine-tuning (training/, docs/training.md). The fault-injection tests start torchrun from
# .venv-inference, so `make test` builds it first.
TEST_PREREQS += $(STAMP)/venv-inference

TORCHRUN := $(ML_VENV)/bin/torchrun
FAQ_DIR ?= $(abspath ../shared/eval/python-faq)
FAQ_RUN ?= .data/training/python-faq
FAQ_STEPS ?= 60

.PHONY: bench-checkpoint bench-elastic train-faq

# Checkpointing overhead (target <= 3.5 %) and crash-to-training time; the last line is one JSON object.
bench-checkpoint: $(STAMP)/venv-inference
	PYTHONPATH=$(CURDIR) $(MLPY) bench/checkpoint.py $(BENCH_ARGS)

# A node lost for good (3 -> 2 ranks), the node coming back (-> 3) and a frozen rank, each against an
# uninterrupted 3-rank run on CPU; the last line is one JSON object (docs/training.md).
bench-elastic: $(STAMP)/venv-inference
	PYTHONPATH=$(CURDIR) $(MLPY) bench/elastic.py $(BENCH_ARGS)

# Fine-tune MiniLM on python-faq's titled corpus (title -> passage) on two CPU ranks, then record
# nDCG@10 on its queries before and after in $(FAQ_RUN)/metrics.json (the queries' 175 answers plus
# a seeded sample of other documents, 1,000 in all, 128 tokens: the full corpus costs ~35 CPU-minutes).
train-faq: $(STAMP)/venv-inference
	PYTHONPATH=$(CURDIR) $(MLPY) -m training.pairs_from_beir $(FAQ_DIR) --out-dir $(FAQ_RUN)/pairs
	PYTHONPATH=$(CURDIR) $(TORCHRUN) --standalone --nproc-per-node 2 --max-restarts 3 -m training.train \
		--pairs $(FAQ_RUN)/pairs/train.jsonl --output-dir $(FAQ_RUN) --batch-size 16 --max-length 64 \
		--max-steps $(FAQ_STEPS) --lr 5e-5 --warmup-steps 6 \
		--eval-beir $(FAQ_DIR) --eval-max-length 128 --eval-max-docs 1000
	@cat $(FAQ_RUN)/metrics.json
