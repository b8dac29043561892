"""NumPy references of the contrastive losses: loops over rows and pairs, float64, no torch.

Every similarity is a dot product of two rows written out; every log-sum-exp subtracts its
maximum. The distributed and memory options of the functionals (``group``, ``chunk_size``,
``local_loss``, ``gather_with_grad``, ``distributed``) do not change the single-process value and
are accepted and ignored.
"""

from __future__ import annotations

import math

import numpy as np

from ._common import as_float, log_sigmoid, reduce

__all__ = ["clip_loss", "info_nce_loss", "siglip_loss", "supcon_loss"]


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows divided by their norm (at least 1e-12, as torch.nn.functional.normalize)."""
    out = np.array(x, dtype=np.float64)
    for idx in np.ndindex(out.shape[:-1]):
        out[idx] = out[idx] / max(math.sqrt(float(np.sum(out[idx] ** 2))), 1e-12)
    return out


def _lse(values: list[float]) -> float:
    if not values:
        return -math.inf
    m = max(values)
    if m == -math.inf:
        return -math.inf
    return m + math.log(sum(math.exp(v - m) for v in values))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(sum(float(x) * float(y) for x, y in zip(a, b, strict=True)))


def info_nce_loss(
    query,
    key,
    temperature=0.07,
    negatives=None,
    symmetric=False,
    labels=None,
    normalize=True,
    group=None,
    chunk_size=None,
    reduction="mean",
):
    """Per query: the mean over its positives p of -log(e^{s_p} / (e^{s_p} + sum_negatives e^s))."""
    q, k = as_float(query), as_float(key)
    neg = None if negatives is None else as_float(negatives)
    if normalize:
        q, k = _unit(q), _unit(k)
        neg = None if neg is None else _unit(neg)
    n = q.shape[0]
    y = np.arange(n) if labels is None else np.asarray(labels)

    def extra(i: int) -> list[float]:
        if neg is None:
            return []
        bank = neg[i] if neg.ndim == 3 else neg
        return [_dot(q[i], bank[m]) / temperature for m in range(bank.shape[0])]

    def direction(rows: np.ndarray, cols: np.ndarray, with_extra: bool) -> np.ndarray:
        out = np.zeros(n)
        for i in range(n):
            pos = [j for j in range(n) if y[j] == y[i]]
            others = [_dot(rows[i], cols[j]) / temperature for j in range(n) if y[j] != y[i]]
            if with_extra:
                others += extra(i)
            terms = []
            for p in pos:
                sp = _dot(rows[i], cols[p]) / temperature
                terms.append(_lse([sp, *others]) - sp)
            out[i] = sum(terms) / len(terms)
        return out

    loss = direction(q, k, True)
    if symmetric:
        loss = 0.5 * (loss + direction(k, q, False))
    return reduce(loss, reduction)


def supcon_loss(
    features,
    labels,
    temperature=0.1,
    base_temperature=0.07,
    contrast_mode="all",
    normalize=True,
    group=None,
    chunk_size=None,
    reduction="mean",
):
    """Khosla et al.'s L_out per anchor view; anchors without positives have loss 0."""
    f = as_float(features)
    if normalize:
        f = _unit(f)
    n, v, _ = f.shape
    y = np.arange(n) if labels is None else np.asarray(labels)
    views = v if contrast_mode == "all" else 1
    out = np.zeros((n, views))
    for i in range(n):
        for w in range(views):
            za = f[i, w]
            denom, pos = [], []
            for j in range(n):
                for u in range(v):
                    if (j, u) == (i, w):
                        continue
                    s = _dot(za, f[j, u]) / temperature
                    denom.append(s)
                    if y[j] == y[i]:
                        pos.append(s)
            if pos:
                lse = _lse(denom)
                out[i, w] = -(temperature / base_temperature) * sum(s - lse for s in pos) / len(pos)
    loss = out if contrast_mode == "all" else out[:, 0]
    return reduce(loss, reduction)


def _logits(img: np.ndarray, txt: np.ndarray, scale: float, bias: float) -> np.ndarray:
    n = img.shape[0]
    s = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            s[i, j] = scale * _dot(img[i], txt[j]) + bias
    return s


def clip_loss(
    image_features,
    text_features,
    logit_scale,
    logit_bias=None,
    local_loss=True,
    gather_with_grad=True,
    group=None,
    chunk_size=None,
    reduction="mean",
):
    """Per pair: the mean of the image-to-text and text-to-image cross entropies."""
    bias = 0.0 if logit_bias is None else float(logit_bias)
    s = _logits(as_float(image_features), as_float(text_features), float(logit_scale), bias)
    n = s.shape[0]
    loss = np.array(
        [0.5 * ((_lse(list(s[i])) - s[i, i]) + (_lse(list(s[:, i])) - s[i, i])) for i in range(n)]
    )
    return reduce(loss, reduction)


def siglip_loss(
    image_features,
    text_features,
    logit_scale,
    logit_bias,
    distributed="all_gather",
    group=None,
    chunk_size=None,
    reduction="mean",
):
    """Per image: -sum_j log sigmoid(z_ij S_ij), z = +1 for its own text and -1 otherwise."""
    bias = 0.0 if logit_bias is None else float(logit_bias)
    s = _logits(as_float(image_features), as_float(text_features), float(logit_scale), bias)
    n = s.shape[0]
    loss = np.array(
        [
            -sum(float(log_sigmoid(np.float64(s[i, j] if i == j else -s[i, j]))) for j in range(n))
            for i in range(n)
        ]
    )
    return reduce(loss, reduction)
