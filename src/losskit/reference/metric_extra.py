"""NumPy references of the circle, proxy-anchor, sub-centre ArcFace, lifted structure and N-pair
losses, and of the retrieval metrics: brute-force loops over pairs, float64, no torch.

Each loss walks every anchor and every pair (or proxy) with plain Python loops and writes the
paper's formula; the retrieval metrics rank every reference for every query with a stable sort
(ties: the smaller reference index first) and count.
"""

from __future__ import annotations

import math

import numpy as np

from ._common import as_float, log_softmax

__all__ = [
    "circle_loss",
    "circle_loss_grad",
    "lifted_structure_loss",
    "mean_average_precision_at_r",
    "n_pairs_loss",
    "precision_at_1",
    "proxy_anchor_loss",
    "r_precision",
    "recall_at_k",
    "retrieval_metrics",
    "sub_center_arcface_loss",
]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.sqrt(np.sum(x * x, axis=-1, keepdims=True)), 1e-12)


def _lse(values: list[float]) -> float:
    return float(np.logaddexp.reduce(values)) if values else -math.inf


def _softplus(v: float) -> float:
    return float(np.logaddexp(0.0, v))


def _reduced(values: np.ndarray, reduction: str, count: int) -> np.ndarray:
    if reduction == "none":
        return values
    if reduction == "sum":
        return np.asarray(values.sum())
    return np.asarray(values.sum() / max(count, 1))


# ---------------------------------------------------------------- circle


def _circle_terms(x, y, i, margin, gamma):
    """Anchor i's positive and negative logits, and (j, alpha, sign) for the gradient."""
    pos, neg = [], []
    for j in range(len(y)):
        if j == i:
            continue
        s = float(x[i] @ x[j])
        if y[j] == y[i]:
            a = max(1.0 + margin - s, 0.0)
            pos.append((j, -gamma * a * (s - (1.0 - margin)), -gamma * a))
        else:
            a = max(s + margin, 0.0)
            neg.append((j, gamma * a * (s - margin), gamma * a))
    return pos, neg


def circle_loss(embeddings, labels, margin=0.4, gamma=80.0, reduction="mean"):
    """Per anchor ``softplus(lse_p(-g a_p (s_p - 1 + m)) + lse_n(g a_n (s_n - m)))``."""
    x, y = _unit(as_float(embeddings)), np.asarray(labels)
    per_anchor = np.zeros(len(y))
    valid = 0
    for i in range(len(y)):
        pos, neg = _circle_terms(x, y, i, margin, gamma)
        if pos and neg:
            valid += 1
            per_anchor[i] = _softplus(_lse([t[1] for t in pos]) + _lse([t[1] for t in neg]))
    return _reduced(per_anchor, reduction, valid)


def circle_loss_grad(
    embeddings, labels, margin=0.4, gamma=80.0, reduction="mean", grad_output=None
):
    """The gradient w.r.t. the embeddings with the weights alpha held constant (stop-gradient)."""
    raw, y = as_float(embeddings), np.asarray(labels)
    x = _unit(raw)
    b = len(y)
    valid = [i for i in range(b) if all(_circle_terms(x, y, i, margin, gamma))]
    if reduction == "none":
        up = np.broadcast_to(as_float(1.0 if grad_output is None else grad_output), (b,))
    else:
        scale = 1.0 / max(len(valid), 1) if reduction == "mean" else 1.0
        g0 = 1.0 if grad_output is None else float(np.asarray(grad_output))
        up = np.full(b, g0 * scale)
    ds = np.zeros((b, b))  # dL/ds_ij
    for i in valid:
        pos, neg = _circle_terms(x, y, i, margin, gamma)
        lp, ln = _lse([t[1] for t in pos]), _lse([t[1] for t in neg])
        sig = 1.0 / (1.0 + math.exp(-(lp + ln)))
        for terms, lse in ((pos, lp), (neg, ln)):
            for j, logit, slope in terms:
                ds[i, j] += up[i] * sig * math.exp(logit - lse) * slope
    gx = (ds + ds.T) @ x  # s_ij = x_i . x_j of the unit rows
    norms = np.maximum(np.sqrt(np.sum(raw * raw, axis=1, keepdims=True)), 1e-12)
    return (gx - np.sum(gx * x, axis=1, keepdims=True) * x) / norms


# ---------------------------------------------------------------- proxy anchor


def proxy_anchor_loss(embeddings, labels, proxies, margin=0.1, alpha=32.0, reduction="mean"):
    """Paper eq. 4: per proxy ``log(1 + sum_pos e^{-a(s-d)})`` and ``log(1 + sum_neg e^{a(s+d)})``."""
    x, p, y = _unit(as_float(embeddings)), _unit(as_float(proxies)), np.asarray(labels)
    num_classes = p.shape[0]
    pos_terms, neg_terms = np.zeros(num_classes), np.zeros(num_classes)
    with_pos = 0
    for c in range(num_classes):
        pos = [-alpha * (float(x[i] @ p[c]) - margin) for i in range(len(y)) if y[i] == c]
        neg = [alpha * (float(x[i] @ p[c]) + margin) for i in range(len(y)) if y[i] != c]
        with_pos += bool(pos)
        pos_terms[c] = _lse([0.0, *pos])
        neg_terms[c] = _lse([0.0, *neg])
    if reduction == "none":
        return pos_terms + neg_terms
    if reduction == "sum":
        return np.asarray(pos_terms.sum() + neg_terms.sum())
    return np.asarray(pos_terms.sum() / max(with_pos, 1) + neg_terms.sum() / max(num_classes, 1))


# ---------------------------------------------------------------- sub-centre ArcFace


def sub_center_arcface_loss(embeddings, labels, weight, scale=64.0, margin=0.5, reduction="mean"):
    """Cross entropy of ``s·max_k cos``, the target's angle increased by ``m`` (acos form)."""
    x, w, y = _unit(as_float(embeddings)), _unit(as_float(weight)), np.asarray(labels)
    num_classes, k = w.shape[0], w.shape[1]
    losses = np.zeros(len(y))
    for i in range(len(y)):
        logits = np.zeros(num_classes)
        for c in range(num_classes):
            logits[c] = max(float(x[i] @ w[c, j]) for j in range(k))
        t = min(max(logits[y[i]], -1.0), 1.0)
        theta = math.acos(t)
        logits[y[i]] = (
            math.cos(theta + margin)
            if theta + margin <= math.pi
            else (t - margin * math.sin(margin))
        )
        losses[i] = -log_softmax(scale * logits, 0)[y[i]]
    if reduction == "mean":
        return np.asarray(losses.mean() if len(losses) else np.nan)
    return _reduced(losses, reduction, len(y))


# ---------------------------------------------------------------- lifted structure


def _distance(a, b, metric, p):
    if metric == "euclidean":
        return float(np.sqrt(np.sum((a - b) ** 2)))
    if metric == "squared_euclidean":
        return float(np.sum((a - b) ** 2))
    if metric == "cosine":
        c = float(_unit(a) @ _unit(b))
        return min(max(1.0 - c, 0.0), 2.0)
    diff = np.abs(a - b)
    return float(diff.max()) if math.isinf(p) else float(np.sum(diff**p) ** (1.0 / p))


def lifted_structure_loss(
    embeddings,
    labels,
    neg_margin=1.0,
    pos_margin=0.0,
    form="original",
    metric="euclidean",
    p=2.0,
    reduction="mean",
):
    """Oh Song et al. eq. 4 per ordered positive pair, or Hermans et al.'s per-anchor form."""
    x, y = as_float(embeddings), np.asarray(labels)
    b = len(y)
    d = np.array([[_distance(x[i], x[j], metric, p) for j in range(b)] for i in range(b)])
    d = d.reshape(b, b)
    if form == "original":
        losses = []
        for i in range(b):
            for j in range(b):
                if j == i or y[j] != y[i]:
                    continue
                neg = [neg_margin - d[i, k] for k in range(b) if y[k] != y[i]]
                neg += [neg_margin - d[j, k] for k in range(b) if y[k] != y[j]]
                if not neg:
                    losses.append(0.0)
                    continue
                joint = _lse(neg) + d[i, j] - pos_margin
                losses.append(max(joint, 0.0) ** 2 / 2.0)
        return _reduced(np.array(losses, dtype=np.float64), reduction, len(losses))
    per_anchor = np.zeros(b)
    for i in range(b):
        pos = [d[i, j] - pos_margin for j in range(b) if j != i and y[j] == y[i]]
        neg = [neg_margin - d[i, j] for j in range(b) if y[j] != y[i]]
        if pos and neg:
            per_anchor[i] = max(_lse(pos) + _lse(neg), 0.0)
    return _reduced(per_anchor, reduction, b)


# ---------------------------------------------------------------- N-pair


def n_pairs_loss(embeddings, labels, reduction="mean"):
    """Per class with two samples: the first is the anchor, the second its positive; softmax over
    the positives of all pairs on raw inner products."""
    x, y = as_float(embeddings), np.asarray(labels)
    anchors, positives = [], []
    for c in dict.fromkeys(y.tolist()):  # classes in order of first appearance
        members = [i for i in range(len(y)) if y[i] == c]
        if len(members) >= 2:
            anchors.append(members[0])
            positives.append(members[1])
    per_row = np.zeros(len(y))
    for a_pos, a in enumerate(anchors):
        logits = np.array([float(x[a] @ x[q]) for q in positives])
        per_row[a] = -log_softmax(logits, 0)[a_pos]
    return _reduced(per_row, reduction, len(anchors))


# ---------------------------------------------------------------- retrieval metrics


def _score(q, r, metric):
    if metric == "euclidean":
        return -float(np.sqrt(np.sum((q - r) ** 2)))
    if metric == "cosine":
        return float(_unit(q) @ _unit(r))
    return float(q @ r)  # "dot"


def retrieval_metrics(
    query,
    query_labels,
    reference=None,
    reference_labels=None,
    *,
    recall_at=(),
    metric="euclidean",
    ref_includes_query=False,
):
    """PML AccuracyCalculator definitions by brute force: every score, a stable sort per query.

    ``reference=None`` means the queries against themselves with the self match excluded (as
    ``ref_includes_query=True`` with the queries as the first references). Queries whose label has
    no other reference are left out of every average; NaN if none is left.
    """
    q, yq = as_float(query), np.asarray(query_labels)
    if reference is None:
        r, yr, self_match = q, yq, True
    else:
        r, yr, self_match = as_float(reference), np.asarray(reference_labels), ref_includes_query
    sums = {"precision_at_1": 0.0, "r_precision": 0.0, "mean_average_precision_at_r": 0.0}
    sums.update({f"recall_at_{k}": 0.0 for k in recall_at})
    counted = 0
    for i in range(len(yq)):
        candidates = [j for j in range(len(yr)) if not (self_match and j == i)]
        scores = np.array([_score(q[i], r[j], metric) for j in candidates])
        order = np.argsort(-scores, kind="stable")  # ties: the smaller index first
        relevant = np.array([yr[candidates[o]] == yq[i] for o in order], dtype=bool)
        big_r = int(relevant.sum())
        if big_r == 0:
            continue
        counted += 1
        sums["precision_at_1"] += float(relevant[0])
        sums["r_precision"] += relevant[:big_r].sum() / big_r
        hits, ap = 0, 0.0
        for rank in range(big_r):
            if relevant[rank]:
                hits += 1
                ap += hits / (rank + 1)
        sums["mean_average_precision_at_r"] += ap / big_r
        for k in recall_at:
            sums[f"recall_at_{k}"] += float(relevant[:k].any())
    return {name: (v / counted if counted else math.nan) for name, v in sums.items()}


def precision_at_1(query, query_labels, reference=None, reference_labels=None, **kwargs):
    return retrieval_metrics(query, query_labels, reference, reference_labels, **kwargs)[
        "precision_at_1"
    ]


def r_precision(query, query_labels, reference=None, reference_labels=None, **kwargs):
    return retrieval_metrics(query, query_labels, reference, reference_labels, **kwargs)[
        "r_precision"
    ]


def mean_average_precision_at_r(
    query, query_labels, reference=None, reference_labels=None, **kwargs
):
    return retrieval_metrics(query, query_labels, reference, reference_labels, **kwargs)[
        "mean_average_precision_at_r"
    ]


def recall_at_k(query, query_labels, reference=None, reference_labels=None, *, k=1, **kwargs):
    out = retrieval_metrics(
        query, query_labels, reference, reference_labels, recall_at=(k,), **kwargs
    )
    return out[f"recall_at_{k}"]
