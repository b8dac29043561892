"""Metric learning: distances, miners, triplet and pair losses, P×K sampling, margin softmax."""
