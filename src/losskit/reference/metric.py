"""Metric-learning references (work in progress)."""

__all__: list[str] = []
