"""NumPy references of the metric-learning losses and miners: brute force, float64, no torch.

Every triplet quantity is found by looping over all (anchor, positive, negative) index triples
and every pair quantity over all (i, j); distances come from the differences of the two rows,
never from the Gram form. Loss functions mirror the functional signatures of
:mod:`losskit.metric`; miners return ``(anchor, positive, negative)`` int64 arrays in
lexicographic order.
"""

from __future__ import annotations

import math

import numpy as np

from ._common import as_float, log_softmax

__all__ = [
    "arcface_loss",
    "batch_all_triplets",
    "batch_hard_triplets",
    "contrastive_loss",
    "cosface_loss",
    "mine_pairs",
    "multi_similarity_loss",
    "pairwise_distance_matrix",
    "semi_hard_triplets",
    "triplet_loss",
]


# ---------------------------------------------------------------- distances


def _distance(a: np.ndarray, b: np.ndarray, metric: str, p: float, eps: float = 1e-12) -> float:
    if metric == "euclidean":
        return float(np.sqrt(np.sum((a - b) ** 2)))
    if metric == "squared_euclidean":
        return float(np.sum((a - b) ** 2))
    if metric == "cosine":
        na = max(float(np.sqrt(np.sum(a * a))), eps)
        nb = max(float(np.sqrt(np.sum(b * b))), eps)
        return float(min(max(1.0 - np.dot(a, b) / (na * nb), 0.0), 2.0))
    if metric == "lp":
        diff = np.abs(a - b)
        if math.isinf(p):
            return float(diff.max()) if diff.size else 0.0
        return float(np.sum(diff**p) ** (1.0 / p))
    raise ValueError(f"unknown metric {metric!r}")


def pairwise_distance_matrix(x, y=None, metric="euclidean", p=2.0, eps=1e-12) -> np.ndarray:
    """``d[i, j]`` = distance between ``x[i]`` and ``y[j]`` (``x[j]`` if ``y`` is None)."""
    x = as_float(x)
    y = x if y is None else as_float(y)
    out = np.zeros((x.shape[0], y.shape[0]))
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            out[i, j] = _distance(x[i], y[j], metric, p, eps)
    return out


# ---------------------------------------------------------------- miners


def _triplets(arrays: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not arrays:
        e = np.zeros(0, dtype=np.int64)
        return e, e.copy(), e.copy()
    a, p, n = (np.array(v, dtype=np.int64) for v in zip(*arrays, strict=True))
    return a, p, n


def _valid(labels: np.ndarray, a: int, p: int, n: int) -> bool:
    return p != a and labels[p] == labels[a] and labels[n] != labels[a]


def batch_hard_triplets(embeddings, labels, metric="euclidean", p=2.0):
    """Per anchor: the farthest positive and closest negative over all valid (a, p, n)."""
    return _batch_hard(pairwise_distance_matrix(embeddings, None, metric, p), np.asarray(labels))


def _batch_hard(d: np.ndarray, y: np.ndarray):
    b = len(y)
    out = []
    for a in range(b):
        hardest_p = hardest_n = None  # first index on ties
        for pi in range(b):
            for ni in range(b):
                if not _valid(y, a, pi, ni):
                    continue
                if hardest_p is None or d[a, pi] > d[a, hardest_p]:
                    hardest_p = pi
                if hardest_n is None or d[a, ni] < d[a, hardest_n]:
                    hardest_n = ni
        if hardest_p is not None:
            out.append((a, hardest_p, hardest_n))
    return _triplets(out)


def batch_all_triplets(embeddings, labels, margin=0.2, metric="euclidean", p=2.0):
    """Every valid (a, p, n) with ``d_ap - d_an + margin > 0`` (every valid one if None)."""
    d = pairwise_distance_matrix(embeddings, None, metric, p)
    return _batch_all(d, np.asarray(labels), margin)


def _batch_all(d: np.ndarray, y: np.ndarray, margin: float | None):
    b = len(y)
    out = []
    for a in range(b):
        for pi in range(b):
            for ni in range(b):
                if _valid(y, a, pi, ni) and (margin is None or d[a, pi] - d[a, ni] + margin > 0):
                    out.append((a, pi, ni))
    return _triplets(out)


def semi_hard_triplets(embeddings, labels, margin=0.2, metric="euclidean", p=2.0):
    """Per (a, p): the closest n with d_ap < d_an < d_ap + margin, else the closest n."""
    d = pairwise_distance_matrix(embeddings, None, metric, p)
    return _semi_hard(d, np.asarray(labels), margin)


def _semi_hard(d: np.ndarray, y: np.ndarray, margin: float):
    b = len(y)
    out = []
    for a in range(b):
        for pi in range(b):
            semi, hardest = None, None
            for ni in range(b):
                if not _valid(y, a, pi, ni):
                    continue
                if hardest is None or d[a, ni] < d[a, hardest]:
                    hardest = ni
                if d[a, pi] < d[a, ni] < d[a, pi] + margin and (
                    semi is None or d[a, ni] < d[a, semi]
                ):
                    semi = ni
            if hardest is not None:
                out.append((a, pi, hardest if semi is None else semi))
    return _triplets(out)


def mine_pairs(embeddings, labels, strategy="hard", epsilon=0.1, metric="euclidean", p=2.0):
    """``(pos_anchor, positive, neg_anchor, negative)`` of the ``all``/``hard``/``easy`` pairs."""
    x, y = as_float(embeddings), np.asarray(labels)
    d = pairwise_distance_matrix(x, None, metric, p)
    b = len(y)
    pos, neg = [], []
    for a in range(b):
        positives = [j for j in range(b) if j != a and y[j] == y[a]]
        negatives = [j for j in range(b) if y[j] != y[a]]
        if strategy == "all":
            pos += [(a, j) for j in positives]
            neg += [(a, j) for j in negatives]
            continue
        if not positives or not negatives:
            continue
        farthest_pos = max(d[a, j] for j in positives)
        closest_neg = min(d[a, j] for j in negatives)
        for j in positives:
            if (d[a, j] > closest_neg - epsilon) == (strategy == "hard"):
                pos.append((a, j))
        for j in negatives:
            if (d[a, j] < farthest_pos + epsilon) == (strategy == "hard"):
                neg.append((a, j))

    def split(pairs):
        arr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    return (*split(pos), *split(neg))


# ---------------------------------------------------------------- losses


def _softplus(v: float) -> float:
    return float(np.logaddexp(0.0, v))


def _reduce_mean_over_items(losses: list[float], reduction: str):
    """``none``/``sum``/``mean``, the mean of no item being 0."""
    arr = np.array(losses, dtype=np.float64)
    if reduction == "none":
        return arr
    if reduction == "sum":
        return np.asarray(arr.sum())
    return np.asarray(arr.sum() / max(len(arr), 1))


def triplet_loss(
    embeddings,
    labels,
    margin=0.2,
    mining="batch_hard",
    metric="euclidean",
    p=2.0,
    soft_margin=False,
    reduction="mean",
):
    """Loss of each mined triplet, ``[d_ap - d_an + m]_+`` or its softplus, then reduced."""
    d = pairwise_distance_matrix(embeddings, None, metric, p)
    y = np.asarray(labels)
    if mining == "batch_hard":
        a, pi, ni = _batch_hard(d, y)
    elif mining == "semi_hard":
        a, pi, ni = _semi_hard(d, y, margin)
    elif mining == "batch_all":
        a, pi, ni = _batch_all(d, y, None if soft_margin else margin)
    else:
        raise ValueError(f"unknown mining {mining!r}")
    losses = []
    for t in range(len(a)):
        v = d[a[t], pi[t]] - d[a[t], ni[t]] + margin
        losses.append(_softplus(v) if soft_margin else max(v, 0.0))
    # batch_all keeps only the triplets with a positive loss, so its mean is over those.
    return _reduce_mean_over_items(losses, reduction)


def contrastive_loss(
    embeddings, labels, pos_margin=0.0, neg_margin=1.0, metric="euclidean", p=2.0, reduction="mean"
):
    """Positive pairs ``[d - m+]_+``, negative pairs ``[m- - d]_+``, over all ordered pairs."""
    x, y = as_float(embeddings), np.asarray(labels)
    b = len(y)
    pos, neg = [], []
    for i in range(b):
        for j in range(b):
            if i == j:
                continue
            d = _distance(x[i], x[j], metric, p)
            if y[i] == y[j]:
                pos.append(max(d - pos_margin, 0.0))
            else:
                neg.append(max(neg_margin - d, 0.0))
    if reduction == "none":
        return np.array(pos + neg, dtype=np.float64)
    if reduction == "sum":
        return np.asarray(sum(pos) + sum(neg))

    def mean_nonzero(values):
        nz = [v for v in values if v > 0]
        return sum(nz) / len(nz) if nz else 0.0

    return np.asarray(mean_nonzero(pos) + mean_nonzero(neg))


def multi_similarity_loss(
    embeddings,
    labels,
    alpha=2.0,
    beta=50.0,
    base=0.5,
    epsilon=0.1,
    mining=True,
    reduction="mean",
):
    """Per anchor ``1/a log(1 + sum_P e^{-a(S-l)}) + 1/b log(1 + sum_N e^{b(S-l)})``."""
    x, y = as_float(embeddings), np.asarray(labels)
    b = len(y)
    xn = x / np.maximum(np.sqrt(np.sum(x * x, axis=1, keepdims=True)), 1e-12)
    per_anchor = np.zeros(b)
    for i in range(b):
        pos = [float(xn[i] @ xn[j]) for j in range(b) if j != i and y[j] == y[i]]
        neg = [float(xn[i] @ xn[j]) for j in range(b) if y[j] != y[i]]
        if mining:
            if not pos or not neg:
                continue
            kept_neg = [s for s in neg if s > min(pos) - epsilon]
            kept_pos = [s for s in pos if s < max(neg) + epsilon]
            pos, neg = kept_pos, kept_neg
        if not pos or not neg:
            continue
        pos_term = np.logaddexp.reduce([0.0] + [-alpha * (s - base) for s in pos]) / alpha
        neg_term = np.logaddexp.reduce([0.0] + [beta * (s - base) for s in neg]) / beta
        per_anchor[i] = pos_term + neg_term
    if reduction == "none":
        return per_anchor
    if reduction == "sum":
        return np.asarray(per_anchor.sum())
    return np.asarray(per_anchor.sum() / max(b, 1))


def _margin_ce(embeddings, labels, weight, target_fn, scale, reduction):
    x, w = as_float(embeddings), as_float(weight)
    y = np.asarray(labels, dtype=np.int64)
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    wn = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    logits = xn @ wn.T
    for i in range(len(y)):
        logits[i, y[i]] = target_fn(min(max(logits[i, y[i]], -1.0), 1.0))
    logits = scale * logits
    losses = -np.array([log_softmax(logits[i], 0)[y[i]] for i in range(len(y))])
    if reduction == "none":
        return losses
    if reduction == "sum":
        return np.asarray(losses.sum())
    return np.asarray(losses.mean() if len(losses) else np.nan)


def arcface_loss(
    embeddings, labels, weight, scale=64.0, margin=0.5, easy_margin=False, reduction="mean"
):
    """Cross entropy of ``s·cos`` with the target logit ``s·cos(acos(cos) + m)``."""

    def target(c: float) -> float:
        with_margin = math.cos(math.acos(c) + margin)
        if easy_margin:
            return with_margin if c > 0 else c
        return with_margin if c > math.cos(math.pi - margin) else c - margin * math.sin(margin)

    return _margin_ce(embeddings, labels, weight, target, scale, reduction)


def cosface_loss(embeddings, labels, weight, scale=64.0, margin=0.35, reduction="mean"):
    """Cross entropy of ``s·cos`` with the target logit ``s·(cos - m)``."""
    return _margin_ce(embeddings, labels, weight, lambda c: c - margin, scale, reduction)
