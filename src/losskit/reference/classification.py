"""NumPy references of the classification losses (cross entropy, NLL, binary cross entropy).

The class dimension is moved last and the positions flattened, then each formula is written
per position. ``*_grad`` functions give the analytic gradient of ``sum(grad_output * loss)`` with
respect to ``input``.
"""

from __future__ import annotations

import numpy as np

from ._common import as_float, log_sigmoid, log_softmax, reduce, sigmoid, upstream

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
    "cross_entropy",
    "cross_entropy_grad",
    "multilabel_soft_margin_loss",
    "nll_loss",
]


def _classes_last(x: np.ndarray) -> np.ndarray:
    """(C,) -> (1, C); (N, C, d1..dK) -> (N·d1···dK, C)."""
    if x.ndim == 1:
        return x[None, :]
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _positions_shape(x: np.ndarray) -> tuple[int, ...]:
    return () if x.ndim == 1 else (x.shape[0], *x.shape[2:])


def _restore_classes(g: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_classes_last` for a gradient of ``like``'s shape."""
    if like.ndim == 1:
        return g[0]
    moved = (like.shape[0], *like.shape[2:], like.shape[1])
    return np.moveaxis(g.reshape(moved), -1, 1)


def _index_terms(logp, target, weight, ignore_index):
    """Per position: the target's weight (0 if ignored), -logp[y] and -sum_c w_c logp_c."""
    n, c = logp.shape
    t = np.asarray(target).reshape(-1).astype(np.int64)
    keep = t != ignore_index
    w = np.ones(c) if weight is None else as_float(weight)
    wy = np.zeros(n)
    nll = np.zeros(n)
    smooth = np.zeros(n)
    for i in range(n):  # plain loop: the reference favours clarity over speed
        if keep[i]:
            wy[i] = w[t[i]]
            nll[i] = -w[t[i]] * logp[i, t[i]]
            smooth[i] = -np.sum(w * logp[i])
    return wy, nll, smooth, keep, t, w


def cross_entropy(
    input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    """Cross entropy: ``-(1-eps) w_y log p_y - eps/C sum_c w_c log p_c`` (indices) or
    ``-sum_c w_c t'_c log p_c`` with ``t' = (1-eps) t + eps/C`` (probabilities)."""
    x = as_float(input)
    logp = log_softmax(_classes_last(x), axis=1)
    c = logp.shape[1]
    eps = float(label_smoothing)
    out_shape = _positions_shape(x)
    target = np.asarray(target)
    if np.issubdtype(target.dtype, np.floating):
        t = _classes_last(as_float(target))
        t = (1.0 - eps) * t + eps / c
        w = np.ones(c) if weight is None else as_float(weight)
        loss = -np.sum(w * t * logp, axis=1)
        return reduce(loss.reshape(out_shape), reduction)
    wy, nll, smooth, _, _, _ = _index_terms(logp, target, weight, ignore_index)
    loss = (1.0 - eps) * nll + eps / c * smooth
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(loss.sum() / wy.sum())
    return reduce(loss.reshape(out_shape), reduction)


def cross_entropy_grad(
    input,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    grad_output=None,
):
    """d/d input of ``sum(grad_output * cross_entropy(...))``, from the softmax closed form.

    Index targets: ``d nll_i/dx = w_y (p - onehot(y))``, ``d smooth_i/dx = (sum_c w_c) p - w``.
    Probability targets: ``d loss_i/dx = (sum_c w_c t'_c) p - w t'``.
    """
    x = as_float(input)
    logp = log_softmax(_classes_last(x), axis=1)
    p = np.exp(logp)
    n, c = logp.shape
    eps = float(label_smoothing)
    target = np.asarray(target)
    w = np.ones(c) if weight is None else as_float(weight)
    if np.issubdtype(target.dtype, np.floating):
        t = (1.0 - eps) * _classes_last(as_float(target)) + eps / c
        g_pos = np.sum(w * t, axis=1, keepdims=True) * p - w * t
        scale = 1.0 / n if reduction == "mean" else 1.0
    else:
        wy, _, _, keep, t_idx, _ = _index_terms(logp, target, weight, ignore_index)
        onehot = np.zeros((n, c))
        onehot[np.arange(n)[keep], t_idx[keep]] = 1.0
        g_nll = wy[:, None] * p - wy[:, None] * onehot
        g_smooth = (w.sum() * p - w) * keep[:, None]
        g_pos = (1.0 - eps) * g_nll + eps / c * g_smooth
        scale = 1.0 / wy.sum() if reduction == "mean" else 1.0
    if reduction == "none":
        go = upstream(grad_output, _positions_shape(x)).reshape(-1, 1)
    else:
        go = float(upstream(grad_output, ()))
    return _restore_classes(g_pos * go * scale, x)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """``-w_y x_y`` per position; ``mean`` divides by the summed target weights."""
    x = as_float(input)
    logp = _classes_last(x)
    wy, nll, _, _, _, _ = _index_terms(logp, target, weight, ignore_index)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(nll.sum() / wy.sum())
    return reduce(nll.reshape(_positions_shape(x)), reduction)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """``-w (y log x + (1-y) log(1-x))`` with each log clamped at -100."""
    x, y = as_float(input), as_float(target)
    with np.errstate(divide="ignore"):
        log_x = np.maximum(np.log(x), -100.0)
        log_1mx = np.maximum(np.log1p(-x), -100.0)
    loss = -(y * log_x + (1.0 - y) * log_1mx)
    if weight is not None:
        loss = loss * as_float(weight)
    return reduce(loss, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """``-w (p_w y log σ(x) + (1-y) log σ(-x))``, written with log σ computed stably."""
    x, y = as_float(input), as_float(target)
    pw = 1.0 if pos_weight is None else as_float(pos_weight)
    loss = -(pw * y * log_sigmoid(x) + (1.0 - y) * log_sigmoid(-x))
    if weight is not None:
        loss = loss * as_float(weight)
    return reduce(loss, reduction)


def binary_cross_entropy_with_logits_grad(
    input, target, weight=None, reduction="mean", pos_weight=None, grad_output=None
):
    """``d loss/dx = w ((1 + (p_w - 1) y) σ(x) - p_w y)``, times the upstream gradient."""
    x, y = as_float(input), as_float(target)
    pw = 1.0 if pos_weight is None else as_float(pos_weight)
    g = (1.0 + (pw - 1.0) * y) * sigmoid(x) - pw * y
    if weight is not None:
        g = g * as_float(weight)
    if reduction == "none":
        return g * upstream(grad_output, x.shape)
    scale = 1.0 / x.size if reduction == "mean" else 1.0
    return g * scale * float(upstream(grad_output, ()))


def multilabel_soft_margin_loss(input, target, weight=None, reduction="mean"):
    """``-(1/C) sum_c w_c (y log σ(x) + (1-y) log σ(-x))`` per sample."""
    x, y = as_float(input), as_float(target)
    loss = -(y * log_sigmoid(x) + (1.0 - y) * log_sigmoid(-x))
    if weight is not None:
        loss = loss * as_float(weight)
    loss = loss.sum(axis=-1) / x.shape[-1]
    return reduce(loss, reduction)
