"""Evaluation: trec_eval measures and significance tests, reports and plots, head analysis, routing
statistics, and leave-one-collection-out validation of the learned methods."""
