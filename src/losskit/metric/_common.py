"""Argument checks and label masks shared by the metric-learning losses and miners."""

from __future__ import annotations

import math

import torch

from .._checks import check_floating, check_integer, check_number, check_same_device

METRICS: tuple[str, ...] = ("euclidean", "squared_euclidean", "cosine", "lp")

# Elements of the largest temporary a chunked loop may build (rows x B): 2^20 floats = 4 MiB.
CHUNK_ELEMENTS = 1 << 20


def check_embeddings(embeddings: object, name: str = "embeddings") -> torch.Tensor:
    """A floating ``(B, D)`` tensor."""
    x = check_floating(name, embeddings)
    if x.dim() != 2:
        raise ValueError(
            f"{name} must be a 2-D tensor of shape (B, D), got a {x.dim()}-D tensor "
            f"of shape {tuple(x.shape)}"
        )
    return x


def check_labels(labels: object, embeddings: torch.Tensor) -> torch.Tensor:
    """An integer ``(B,)`` tensor of identity labels, one per row of ``embeddings``."""
    t = check_integer("labels", labels)
    if t.dim() != 1 or t.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must be a 1-D tensor with one label per embedding ({embeddings.shape[0]},), "
            f"got shape {tuple(t.shape)}"
        )
    check_same_device("labels", t, embeddings, "embeddings")
    return t


def check_metric(metric: object, p: object) -> tuple[str, float]:
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    p = check_number("p", p)
    if not p >= 1.0:
        raise ValueError(f"p must be >= 1 (a norm), got {p!r}")
    return metric, p


def check_nonnegative(name: str, value: object) -> float:
    v = check_number(name, value)
    if not (v >= 0.0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def check_finite(name: str, value: object) -> float:
    v = check_number(name, value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def check_positive(name: str, value: object) -> float:
    v = check_number(name, value)
    if not (v > 0.0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(same, different)`` boolean ``(B, B)`` masks; ``same`` excludes the diagonal."""
    same = labels[:, None] == labels[None, :]
    different = ~same
    same.fill_diagonal_(False)
    return same, different


def safe_sqrt(sq: torch.Tensor, eps: float) -> torch.Tensor:
    """``sqrt(sq)`` for ``sq > eps``, exactly 0 (with zero gradient) at or below ``eps``.

    The clamp keeps the unused branch finite, so ``where`` leaks no inf/NaN into the gradient;
    the largest gradient is ``1 / (2 sqrt(eps))``.
    """
    return torch.where(sq > eps, sq.clamp_min(eps).sqrt(), torch.zeros_like(sq))


def zero_loss(like: torch.Tensor) -> torch.Tensor:
    """A scalar 0 connected to ``like``'s graph (zero gradient, never NaN for finite inputs)."""
    return (like * 0).sum()


def nan_if_nonfinite(loss: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """``loss``, made NaN if any embedding is NaN or infinite (as torch's losses would be).

    Mining and the ``loss > 0`` masks compare distances, and a NaN distance fails every
    comparison: without this, a diverged embedding would silently drop out of the loss.
    :func:`zero_loss` is 0 for finite embeddings and NaN otherwise, with no overflow for large
    values.
    """
    return loss + zero_loss(embeddings)
