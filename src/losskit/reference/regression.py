"""NumPy references of the regression losses (L1, MSE, smooth L1, Huber, Poisson and Gaussian NLL).

Each formula is written element by element on float64 arrays; the weighted ``mean`` of L1/MSE
divides by the summed weight, that of Huber by the number of elements (torch's rules).
"""

from __future__ import annotations

import math

import numpy as np

from ._common import as_float, reduce

__all__ = [
    "gaussian_nll_loss",
    "huber_loss",
    "l1_loss",
    "mse_loss",
    "poisson_nll_loss",
    "smooth_l1_loss",
]


def _normalised(loss: np.ndarray, weight, reduction: str) -> np.ndarray:
    """``w * loss`` reduced; weighted ``mean`` is ``sum(w * loss) / sum(w)`` (NaN for no weight)."""
    if weight is None:
        return reduce(loss, reduction)
    w = as_float(weight)
    loss = w * loss
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(loss.sum() / w.sum())
    return reduce(loss, reduction)


def l1_loss(input, target, reduction="mean", weight=None):
    """``w |x - y|``."""
    return _normalised(np.abs(as_float(input) - as_float(target)), weight, reduction)


def mse_loss(input, target, reduction="mean", weight=None):
    """``w (x - y)^2``."""
    return _normalised((as_float(input) - as_float(target)) ** 2, weight, reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """``0.5 d^2 / beta`` if ``d < beta`` else ``d - 0.5 beta``, with ``d = |x - y|``."""
    d = np.abs(as_float(input) - as_float(target))
    if beta == 0:
        return reduce(d, reduction)
    loss = np.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta)
    return reduce(loss, reduction)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """``w * (0.5 d^2 if d < delta else delta (d - 0.5 delta))``; ``mean`` over elements."""
    d = np.abs(as_float(input) - as_float(target))
    loss = np.where(d < delta, 0.5 * d**2, delta * (d - 0.5 * delta))
    if weight is not None:
        loss = loss * as_float(weight)
    return reduce(loss, reduction)


def _stirling(t: np.ndarray) -> np.ndarray:
    """``t log t - t + 0.5 log(2 pi t)`` where ``t > 1``, else 0."""
    out = np.zeros_like(t)
    for i, ti in np.ndenumerate(t):
        if ti > 1:
            out[i] = ti * math.log(ti) - ti + 0.5 * math.log(2 * math.pi * ti)
    return out


def poisson_nll_loss(input, target, log_input=True, full=False, eps=1e-8, reduction="mean"):
    """``exp(x) - y x`` (log input) or ``x - y log(x + eps)``, plus Stirling's term if ``full``."""
    x, y = as_float(input), as_float(target)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        loss = np.exp(x) - y * x if log_input else x - y * np.log(x + eps)
    if full:
        loss = loss + _stirling(y)
    return reduce(loss, reduction)


def _var_like(var, x: np.ndarray) -> np.ndarray:
    """The variance broadcast to ``x``: a number, ``x``'s shape, ``x``'s shape minus the last
    dimension, or ``x``'s shape with one dimension of size 1."""
    v = as_float(var)
    if v.shape != x.shape and v.shape == x.shape[:-1]:
        v = v[..., None]
    return np.broadcast_to(v, x.shape)


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """``0.5 (log v + (x - y)^2 / v)`` with ``v = max(var, eps)``, plus ``0.5 log 2 pi`` if full."""
    x, y = as_float(input), as_float(target)
    v = np.maximum(_var_like(var, x), eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = 0.5 * (np.log(v) + (x - y) ** 2 / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return reduce(loss, reduction)
