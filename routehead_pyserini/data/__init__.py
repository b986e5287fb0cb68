"""Data: TREC runs, qrels and topics, JSONL corpora, the dataset registry, random-order controls,
cross-validation folds and content keys. Imports nothing else of the package but its root modules."""
