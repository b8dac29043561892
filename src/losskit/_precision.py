"""Accumulate in float32 for float16/bfloat16 inputs, return the input's dtype."""

from __future__ import annotations

import torch

LOW_PRECISION = (torch.float16, torch.bfloat16)
_LOW_PRECISION = LOW_PRECISION


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a loss computes in for inputs of ``dtype``."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def upcast(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` in its compute dtype (a no-op for float32/float64 and for integer tensors)."""
    if t is None or not t.is_floating_point():
        return t
    return t.to(compute_dtype(t.dtype))


# Around torch's native ops (the torch backends): cheap no-ops in the common float32/64 case.


def compute_input(t: torch.Tensor) -> torch.Tensor:
    """The input in its compute dtype: float16/bfloat16 in float32, anything else as it is."""
    return t.to(torch.float32) if t.dtype in LOW_PRECISION else t


def compute_as(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A floating ``t`` in ``dtype`` (a native op wants one dtype); ``None``/integer as they are."""
    if t is None or t.dtype == dtype or not t.is_floating_point():
        return t
    return t.to(dtype)


def restore(out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``out`` in the caller's ``dtype`` (the input's)."""
    return out if out.dtype == dtype else out.to(dtype)
