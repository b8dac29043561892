"""NumPy reference of the Kullback-Leibler divergence and its analytic gradient."""

from __future__ import annotations

import numpy as np

from ._common import as_float, reduce, upstream

__all__ = ["kl_div", "kl_div_grad"]


def _batch_scale(x: np.ndarray) -> float:
    """``batchmean`` divides by the size of the first dimension (by 1 for a 0-D input)."""
    return float(x.shape[0]) if x.ndim > 0 else 1.0


def kl_div(input, target, reduction="mean", log_target=False):
    """``p (log p - x)`` with ``0`` where ``p == 0`` and NaN where ``p < 0``; or
    ``exp(t) (t - x)`` for a log-space target ``t``."""
    x, t = as_float(input), as_float(target)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if log_target:
            loss = np.exp(t) * (t - x)
        else:
            # 0 log 0 = 0 (the limit); log of a negative number is NaN.
            t_log_t = np.where(t == 0, 0.0, t * np.log(np.where(t == 0, 1.0, t)))
            loss = t_log_t - t * x
        if reduction == "batchmean":
            return np.asarray(loss.sum() / _batch_scale(x))
    return reduce(loss, reduction)


def kl_div_grad(input, target, reduction="mean", log_target=False, grad_output=None):
    """d/d input of ``sum(grad_output * kl_div(...))``: ``-p`` per element (``-exp(t)`` in log
    space), times 1, ``1/numel`` (mean) or ``1/input.shape[0]`` (batchmean)."""
    x, t = as_float(input), as_float(target)
    g = -np.exp(t) if log_target else -t
    if reduction == "none":
        return g * upstream(grad_output, x.shape)
    scale = {"sum": 1.0, "mean": 1.0 / max(x.size, 1), "batchmean": 1.0 / _batch_scale(x)}
    return g * scale[reduction] * float(upstream(grad_output, ()))
