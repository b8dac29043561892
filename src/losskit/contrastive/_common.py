"""Argument checks shared by the contrastive losses."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from .._checks import check_floating, check_integer, check_number, check_same_device
from .._precision import compute_dtype

__all__ = [
    "check_chunk_size",
    "check_group",
    "check_labels",
    "check_pair",
    "check_scalar",
    "check_temperature",
]


def check_rows(name: str, t: object, ndim: int = 2) -> torch.Tensor:
    x = check_floating(name, t)
    if x.dim() != ndim:
        shape = "(N, D)" if ndim == 2 else "(N, V, D)"
        raise ValueError(
            f"{name} must be a {ndim}-D tensor of shape {shape}, got a {x.dim()}-D tensor "
            f"of shape {tuple(x.shape)}"
        )
    return x


def check_pair(name_a: str, a: object, name_b: str, b: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Two ``(N, D)`` floating tensors of the same shape on one device (the positive pairs)."""
    a, b = check_rows(name_a, a), check_rows(name_b, b)
    check_same_device(name_b, b, a, name_a)
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape (N, D) (row i of one is the "
            f"positive of row i of the other), got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a, b


def check_scalar(name: str, value: object, like: torch.Tensor, like_name: str) -> torch.Tensor:
    """A number, or a floating tensor with one element on ``like``'s device (e.g. a learnable
    scale); returned as a 0-d tensor in ``like``'s compute dtype (gradient kept)."""
    if isinstance(value, torch.Tensor):
        check_floating(name, value)
        if value.numel() != 1:
            raise ValueError(
                f"{name} must be a number or a tensor with one element, got shape "
                f"{tuple(value.shape)}"
            )
        check_same_device(name, value, like, like_name)
        return value.reshape(())
    v = check_number(name, value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return torch.tensor(v, dtype=compute_dtype(like.dtype), device=like.device)


def check_temperature(name: str, value: object) -> float:
    v = check_number(name, value)
    if not (v > 0.0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_chunk_size(chunk_size: object) -> int | None:
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(f"chunk_size must be an int or None, got {type(chunk_size).__name__}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 (rows per block), got {chunk_size}")
    return chunk_size


def check_group(group: object) -> None:
    if group is not None and not isinstance(group, dist.ProcessGroup):
        raise TypeError(
            f"group must be a torch.distributed.ProcessGroup or None, got {type(group).__name__}"
        )


def check_labels(labels: object, n: int, like: torch.Tensor, like_name: str) -> torch.Tensor:
    """Integer ``(N,)`` labels, one per row of ``like``."""
    t = check_integer("labels", labels)
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(
            f"labels must be a 1-D tensor with one label per row of {like_name} ({n},), "
            f"got shape {tuple(t.shape)}"
        )
    check_same_device("labels", t, like, like_name)
    return t
