"""ragsite's inference service: OpenAI-compatible embeddings and chat completions."""
