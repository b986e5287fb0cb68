"""Re-ranking: the :class:`~.reranker.Reranker` (prompt settings, scoring a run), and Ray workers."""
