"""NumPy references of the ranking and margin losses (float64, no torch).

Each formula is written per sample with plain loops where the index bookkeeping matters
(multi-class and multi-label margins), so that the reference reads like the definition.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import as_float, log_sigmoid, reduce

__all__ = [
    "cosine_embedding_loss",
    "hinge_embedding_loss",
    "margin_ranking_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "pairwise_distance",
    "soft_margin_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
]

# torch adds a C++ ``float`` 1e-12, i.e. float32(1e-12) = 9.999999960041972e-13.
COSINE_EPSILON = float(np.float32(1e-12))


def margin_ranking_loss(input1, input2, target, margin=0.0, reduction="mean"):
    """``max(0, -y (x1 - x2) + margin)``."""
    x1, x2, y = as_float(input1), as_float(input2), as_float(target)
    loss = np.maximum(0.0, -y * (x1 - x2) + margin)
    return reduce(loss, reduction)


def hinge_embedding_loss(input, target, margin=1.0, reduction="mean"):
    """``[y != 1] max(0, margin - x) + [y != -1] x`` (``x`` if y = 1, the hinge if y = -1)."""
    x, y = as_float(input), as_float(target)
    loss = np.where(y != 1, np.maximum(0.0, margin - x), 0.0) + np.where(y != -1, x, 0.0)
    return reduce(loss, reduction)


def soft_margin_loss(input, target, reduction="mean"):
    """``log(1 + exp(-y x)) = -log sigmoid(y x)``, evaluated stably."""
    x, y = as_float(input), as_float(target)
    return reduce(-log_sigmoid(y * x), reduction)


def cosine_embedding_loss(input1, input2, target, margin=0.0, reduction="mean"):
    """``1 - cos`` for y = 1, ``max(0, cos - margin)`` for y = -1, 0 otherwise.

    ``cos = x1.x2 / sqrt((|x1|^2 + e)(|x2|^2 + e))``, ``e = float32(1e-12)``: torch's epsilon.
    """
    x1, x2, y = as_float(input1), as_float(input2), as_float(target)
    dot = np.sum(x1 * x2, axis=-1)
    denom = np.sqrt(
        (np.sum(x1**2, axis=-1) + COSINE_EPSILON) * (np.sum(x2**2, axis=-1) + COSINE_EPSILON)
    )
    cos = dot / denom
    loss = np.where(y == 1, 1.0 - cos, 0.0) + np.where(y == -1, np.maximum(0.0, cos - margin), 0.0)
    return reduce(np.asarray(loss, dtype=np.float64), reduction)


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, reduction="mean"):
    """``(1/C) sum_{i != y} w_y max(0, margin - x_y + x_i)^p`` per sample."""
    x = as_float(input)
    t = np.asarray(target, dtype=np.int64)
    unbatched = x.ndim == 1
    rows, targets = (x[None, :], t.reshape(1)) if unbatched else (x, t)
    n, c = rows.shape
    w = np.ones(c) if weight is None else as_float(weight)
    loss = np.zeros(n)
    for k in range(n):
        y = targets[k]
        total = 0.0
        for i in range(c):
            if i == y:
                continue
            total += w[y] * max(0.0, margin - rows[k, y] + rows[k, i]) ** p
        loss[k] = total / c
    return reduce(loss[0] if unbatched else loss, reduction)


def multilabel_margin_loss(input, target, reduction="mean"):
    """``(1/C) sum_{j in T} sum_{i not in T} max(0, 1 - (x_j - x_i))``, T = entries before the first -1.

    A class listed twice in T is counted twice (as torch).
    """
    x = as_float(input)
    t = np.asarray(target, dtype=np.int64)
    unbatched = x.ndim == 1
    rows, targets = (x[None, :], t[None, :]) if unbatched else (x, t)
    n, c = rows.shape
    loss = np.zeros(n)
    for k in range(n):
        listed = []
        for j in targets[k]:
            if j < 0:
                break
            listed.append(int(j))
        members = set(listed)
        total = 0.0
        for j in listed:
            for i in range(c):
                if i not in members:
                    total += max(0.0, 1.0 - (rows[k, j] - rows[k, i]))
        loss[k] = total / c
    return reduce(loss[0] if unbatched else loss, reduction)


def _p_norm(v: np.ndarray, p: float) -> np.ndarray:
    """The ``p``-"norm" over the last axis, with torch's special cases ``p = 0`` and ``p = ±inf``."""
    a = np.abs(v)
    if p == 0:
        return np.sum(a != 0, axis=-1).astype(np.float64)
    if np.isinf(p):
        return a.max(axis=-1) if p > 0 else a.min(axis=-1)
    with np.errstate(divide="ignore"):
        return np.sum(a**p, axis=-1) ** (1.0 / p)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """``|| x1 - x2 + eps ||_p`` over the last axis (eps added to every component)."""
    d = _p_norm(as_float(x1) - as_float(x2) + eps, float(p))
    return d[..., None] if keepdim else d


def _triplet(d_pos, d_neg, d_swap, margin, reduction):
    if d_swap is not None:
        d_neg = np.minimum(d_neg, d_swap)
    return reduce(np.maximum(margin + d_pos - d_neg, 0.0), reduction)


def triplet_margin_loss(
    anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="mean"
):
    """``max(d(a, p) - d(a, n) + margin, 0)``, ``d = pairwise_distance``; swap: ``min(d(a,n), d(p,n))``."""
    a, pos, neg = as_float(anchor), as_float(positive), as_float(negative)
    d_pos = pairwise_distance(a, pos, p, eps)
    d_neg = pairwise_distance(a, neg, p, eps)
    d_swap = pairwise_distance(pos, neg, p, eps) if swap else None
    return _triplet(d_pos, d_neg, d_swap, margin, reduction)


def triplet_margin_with_distance_loss(
    anchor,
    positive,
    negative,
    *,
    distance_function: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    margin=1.0,
    swap=False,
    reduction="mean",
):
    """As :func:`triplet_margin_loss` with a NumPy ``distance_function`` (default: Euclidean)."""
    dist = distance_function if distance_function is not None else pairwise_distance
    a, pos, neg = as_float(anchor), as_float(positive), as_float(negative)
    d_pos = as_float(dist(a, pos))
    d_neg = as_float(dist(a, neg))
    d_swap = as_float(dist(pos, neg)) if swap else None
    return _triplet(d_pos, d_neg, d_swap, margin, reduction)
