"""Metric-learning registry entries (work in progress)."""
