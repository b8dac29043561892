"""Small argument checks shared by the aggregators."""

from __future__ import annotations

from ..._checks import check_int

__all__ = ["check_positive_int"]


def check_positive_int(name: str, value: object) -> int:
    value = check_int(name, value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value
