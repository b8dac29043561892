"""Accumulate in float32 for float16/bfloat16 inputs, return the input's dtype."""

from __future__ import annotations

import torch

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a loss computes in for inputs of ``dtype``."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def upcast(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` in its compute dtype (a no-op for float32/float64 and for integer tensors)."""
    if t is None or not t.is_floating_point():
        return t
    return t.to(compute_dtype(t.dtype))
