"""First stage: the one JVM, Lucene indexes and BM25 search (Pyserini), the dense bi-encoder index and
scorer, and where a re-ranker gets each candidate's text."""
