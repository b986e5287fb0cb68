"""Heads: head sets and their fusion with first-stage scores, nDCG, offline labels, learned weights,
the routers (RouteHead MLP, soft, kNN), their checkpoint files, training data pooled over collections,
and the shipped presets."""
