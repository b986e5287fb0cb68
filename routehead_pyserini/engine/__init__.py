"""The frozen LLM: loading any causal LM (hub name, local folder or GGUF) by its config, prompts,
query-row attention through transformers' AttentionInterface, per-head scoring, the score cache and query
embeddings. Knows nothing of head selection."""
