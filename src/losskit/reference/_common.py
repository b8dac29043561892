"""Small helpers shared by the NumPy references (float64 throughout, no torch)."""

from __future__ import annotations

import numpy as np

REDUCTIONS = ("none", "mean", "sum")


def as_float(x: object) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def reduce(loss: np.ndarray, reduction: str) -> np.ndarray:
    """``none`` / ``mean`` / ``sum`` of an element-wise loss (mean of nothing is NaN)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.asarray(loss.sum())
    if reduction == "mean":
        with np.errstate(invalid="ignore"):
            return np.asarray(loss.sum() / loss.size) if loss.size else np.asarray(np.nan)
    raise ValueError(f"unknown reduction {reduction!r}")


def reduction_scale(loss_shape: tuple[int, ...], reduction: str) -> float:
    """d(reduced)/d(loss_i) for an unweighted reduction: 1 for none/sum, 1/n for mean."""
    if reduction == "mean":
        return 1.0 / max(int(np.prod(loss_shape)), 1)
    return 1.0


def upstream(grad_output: object | None, shape: tuple[int, ...]) -> np.ndarray:
    """The upstream gradient: ones of the loss's shape unless given."""
    if grad_output is None:
        return np.ones(shape)
    return np.broadcast_to(as_float(grad_output), shape)


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    z = x - m
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    # log σ(x) = -log(1 + e^{-x}) = min(x, 0) - log(1 + e^{-|x|})
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(log_sigmoid(x))
