"""Module forms of the metric-learning losses (work in progress)."""

__all__: list[str] = []
