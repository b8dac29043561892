"""NumPy references of the detection losses (GFL's QFL and DFL, varifocal, balanced L1).

Each is the paper's formula per element, written with plain ``math`` in loops, then mmdetection's
``weight_reduce_loss``: times ``weight``, then none / mean / sum, the mean dividing by
``avg_factor`` when given; the mean of no elements is 0 (losskit's choice, see
:mod:`losskit.detection`).
"""

from __future__ import annotations

import math

import numpy as np

from ._common import as_float

__all__ = [
    "balanced_l1_loss",
    "distribution_focal_loss",
    "quality_focal_loss",
    "varifocal_loss",
]


def _weight_reduce(loss: np.ndarray, weight, reduction: str, avg_factor) -> np.ndarray:
    if weight is not None:
        loss = loss * as_float(weight)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.asarray(loss.sum())
    if reduction != "mean":
        raise ValueError(f"unknown reduction {reduction!r}")
    if avg_factor is not None:
        return np.asarray(loss.sum() / float(avg_factor))
    return np.asarray(loss.mean() if loss.size else 0.0)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _bce(x: float, y: float) -> float:
    """``-y log σ(x) - (1 - y) log σ(-x)`` = ``max(x, 0) - x y + log(1 + e^{-|x|})``."""
    return max(x, 0.0) - x * y + math.log1p(math.exp(-abs(x)))


def quality_focal_loss(input, target, weight=None, avg_factor=None, beta=2.0, reduction="mean"):
    """``sum_c |y_c - σ(x_c)|^beta BCE(x_c, y_c)`` per anchor; ``target`` is ``(labels, scores)``
    (``labels == C`` for background) or the dense ``y`` of ``input``'s shape."""
    x = as_float(input)
    c = x.shape[-1]
    rows = x.reshape(-1, c)
    if isinstance(target, (tuple, list)):
        labels = np.asarray(target[0]).reshape(-1)
        scores = as_float(target[1]).reshape(-1)
        y = np.zeros_like(rows)
        for i, (label, score) in enumerate(zip(labels, scores, strict=True)):
            if 0 <= label < c:
                y[i, int(label)] = score
    else:
        y = as_float(target).reshape(-1, c)
    loss = np.zeros(rows.shape[0])
    for i in range(rows.shape[0]):
        for j in range(c):
            xi, yi = float(rows[i, j]), float(y[i, j])
            loss[i] += abs(yi - _sigmoid(xi)) ** beta * _bce(xi, yi)
    return _weight_reduce(loss.reshape(x.shape[:-1]), weight, reduction, avg_factor)


def distribution_focal_loss(input, target, weight=None, avg_factor=None, reduction="mean"):
    """``-(r - t) log p_l - (t - l) log p_r`` with ``l = floor(t)`` (``n - 1`` at ``t = n``),
    ``r = l + 1`` and ``p`` the softmax over the ``n + 1`` bins."""
    x = as_float(input)
    t = as_float(target).reshape(-1)
    bins = x.shape[-1]
    rows = x.reshape(-1, bins)
    loss = np.zeros(rows.shape[0])
    for i in range(rows.shape[0]):
        m = float(np.max(rows[i]))
        log_z = m + math.log(sum(math.exp(float(v) - m) for v in rows[i]))
        left = min(math.floor(t[i]), bins - 2)
        right = left + 1
        log_p_left, log_p_right = rows[i, left] - log_z, rows[i, right] - log_z
        loss[i] = -((right - t[i]) * log_p_left + (t[i] - left) * log_p_right)
    return _weight_reduce(loss.reshape(x.shape[:-1]), weight, reduction, avg_factor)


def varifocal_loss(
    input,
    target,
    weight=None,
    avg_factor=None,
    alpha=0.75,
    gamma=2.0,
    iou_weighted=True,
    reduction="mean",
):
    """``q BCE(x, q)`` (or ``BCE`` without ``iou_weighted``) where ``q > 0``, else
    ``alpha σ(x)^gamma BCE(x, 0)``."""
    x, q = as_float(input), as_float(target)
    loss = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        xi, qi = float(x[idx]), float(q[idx])
        if qi > 0:
            focal = qi if iou_weighted else 1.0
        else:
            focal = alpha * _sigmoid(xi) ** gamma
        loss[idx] = focal * _bce(xi, qi)
    return _weight_reduce(loss, weight, reduction, avg_factor)


def balanced_l1_loss(
    input,
    target,
    weight=None,
    avg_factor=None,
    alpha=0.5,
    gamma=1.5,
    beta=1.0,
    reduction="mean",
):
    """Libra R-CNN's piecewise loss of ``d = |x - t|`` with ``b = e^{gamma / alpha} - 1``."""
    x, t = as_float(input), as_float(target)
    b = math.exp(gamma / alpha) - 1.0
    loss = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        d = abs(float(x[idx]) - float(t[idx]))
        if d < beta:
            loss[idx] = alpha / b * (b * d + 1.0) * math.log(b * d / beta + 1.0) - alpha * d
        else:
            loss[idx] = gamma * d + gamma / b - alpha * beta
    return _weight_reduce(loss, weight, reduction, avg_factor)
