"""Task preference vectors of the aggregators that take one."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["check_pref_vector", "preference"]


def check_pref_vector(value: object) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, (torch.Tensor, np.ndarray)):
        value = value.tolist()
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or not value:
        raise TypeError(
            f"pref_vector must be a non-empty sequence of numbers or None, got {value!r}"
        )
    out = tuple(float(v) for v in value)
    if any(not math.isfinite(v) or v < 0 for v in out):
        raise ValueError(f"pref_vector must hold finite numbers >= 0, got {list(out)}")
    return out


def preference(pref: tuple[float, ...] | None, num_tasks: int) -> np.ndarray:
    if pref is None:
        return np.full(num_tasks, 1.0 / num_tasks)
    if len(pref) != num_tasks:
        raise ValueError(
            f"pref_vector has {len(pref)} entries but {num_tasks} task losses were given"
        )
    return np.asarray(pref, dtype=np.float64)
