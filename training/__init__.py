"""Retriever fine-tuning: a fault-tolerant, resumable torchrun job (see docs/training.md)."""
