"""NumPy references of the language-model head losses (linear cross entropy, z-loss, causal LM)."""

from __future__ import annotations

import numpy as np

from ._common import as_float
from .classification import cross_entropy

__all__ = ["causal_lm_loss", "cross_entropy_with_z_loss", "linear_cross_entropy"]


def _head_logits(x, w, b, logit_scale):
    """``logit_scale * (x @ W.T + b)`` for rows ``x (M, H)`` and a ``(C, H)`` weight."""
    logits = x @ w.T
    if b is not None:
        logits = logits + b
    return logit_scale * logits


def _capped_stats(logits, softcap):
    """Soft-capped logits and their log-sum-exp per row."""
    if softcap is not None:
        logits = softcap * np.tanh(logits / softcap)
    m = logits.max(axis=1)
    lse = m + np.log(np.sum(np.exp(logits - m[:, None]), axis=1))
    return logits, lse


def linear_cross_entropy(
    input,
    linear_weight,
    target,
    *,
    linear_bias=None,
    weight=None,
    reduction="mean",
    ignore_index=None,
    label_smoothing=0.0,
    options=None,
    chunk_size=None,
    chunk_bytes=None,
    softcap=None,
    logit_scale=1.0,
    lse_square_scale=0.0,
    return_z_loss=False,
):
    """``cross_entropy(cap(s (x W^T + b)), y) + lambda lse^2``: the full logits, no chunking.

    ``(..., H)`` inputs are rows with classes last; a K-dimensional weight ``(C, d1.., H)`` gives
    ``(N, C, d1..)`` logits as torch. ``ignore_index=None`` means -100.
    """
    ignore = -100 if ignore_index is None else ignore_index
    x = as_float(input)
    w = as_float(linear_weight)
    b = None if linear_bias is None else as_float(linear_bias)
    if w.ndim > 2:  # K-dimensional: torch's (N, C, d1, ..., dK) logits
        out_shape = w.shape[:-1]
        logits = _head_logits(x, w.reshape(-1, w.shape[-1]), None if b is None else b.reshape(-1),
                              logit_scale).reshape(x.shape[0], *out_shape)  # fmt: skip
        return cross_entropy_with_z_loss(
            logits, target, weight, ignore, reduction, label_smoothing,
            lse_square_scale=lse_square_scale, softcap=softcap, return_z_loss=return_z_loss,
        )  # fmt: skip
    batch = x.shape[:-1]
    logits = _head_logits(x.reshape(-1, x.shape[-1]), w, b, logit_scale)
    t = np.asarray(target)
    if not np.issubdtype(t.dtype, np.floating):
        loss, z = cross_entropy_with_z_loss(
            logits, t.reshape(-1), weight, ignore, reduction, label_smoothing,
            lse_square_scale=lse_square_scale, softcap=softcap, return_z_loss=True,
        )  # fmt: skip
    else:  # probabilities: every row is kept
        t = as_float(t).reshape(-1, w.shape[0])
        capped, lse = _capped_stats(logits, softcap)
        loss = cross_entropy(capped, t, weight, ignore, reduction, label_smoothing)
        z_rows = lse_square_scale * lse**2
        z = {"none": z_rows, "sum": z_rows.sum(), "mean": z_rows.mean() if len(z_rows) else np.nan}[
            reduction
        ]
        loss = loss + z
    if reduction == "none":
        loss, z = np.reshape(loss, batch), np.reshape(z, batch)
    return (loss, z) if return_z_loss else loss


def causal_lm_loss(
    hidden_states,
    lm_head_weight,
    labels,
    *,
    lm_head_bias=None,
    shift=True,
    ignore_index=-100,
    num_items_in_batch=None,
    label_smoothing=0.0,
    softcap=None,
    logit_scale=1.0,
    z_loss=0.0,
    reduction="mean",
    chunk_bytes=None,
):
    """Next-token loss, position by position: ``labels[..., t + 1]`` from ``hidden[..., t, :]``.

    Per kept token ``(1 - eps) (lse - z_y) + eps/V (V lse - sum_v z_v) + z_loss lse^2`` with
    ``z = cap(s (h W^T + b))``; ``mean`` divides the sum by ``num_items_in_batch`` when given,
    else by the number of kept tokens.
    """
    h = as_float(hidden_states)
    y = np.asarray(labels)
    if shift:
        h, y = h[..., :-1, :], y[..., 1:]
    w = as_float(lm_head_weight)
    b = None if lm_head_bias is None else as_float(lm_head_bias)
    eps = float(label_smoothing)
    rows = h.reshape(-1, h.shape[-1])
    ys = y.reshape(-1)
    per_token = np.zeros(len(ys))
    kept = 0
    for i in range(len(ys)):
        if ys[i] == ignore_index:
            continue
        kept += 1
        logits = logit_scale * (w @ rows[i] + (0.0 if b is None else b))
        if softcap is not None:
            logits = softcap * np.tanh(logits / softcap)
        m = logits.max()
        lse = m + np.log(np.sum(np.exp(logits - m)))
        nll = lse - logits[ys[i]]
        smooth = len(logits) * lse - logits.sum()
        per_token[i] = (1.0 - eps) * nll + eps / len(logits) * smooth + z_loss * lse**2
    if reduction == "none":
        return per_token.reshape(y.shape)
    total = per_token.sum()
    if reduction == "sum":
        return np.asarray(total)
    denom = kept if num_items_in_batch is None else float(np.asarray(num_items_in_batch))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(total / denom) if denom else np.asarray(np.nan)


def cross_entropy_with_z_loss(
    input,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    *,
    lse_square_scale=0.0,
    softcap=None,
    return_z_loss=False,
    inplace_backward=False,
):
    """``CE(x', y) + s lse(x')^2`` per kept position, ``x' = c tanh(x / c)``.

    ``mean``: the CE term over the summed target weights, the z term over the kept positions.
    """
    x = as_float(input)
    if softcap is not None:
        x = softcap * np.tanh(x / softcap)
    ce = cross_entropy(x, target, weight, ignore_index, reduction, label_smoothing)
    classes_last = x[None, :] if x.ndim == 1 else np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])
    t = np.asarray(target).reshape(-1)
    m = classes_last.max(axis=1)
    lse = m + np.log(np.sum(np.exp(classes_last - m[:, None]), axis=1))
    z = np.zeros(t.shape[0])
    for i in range(t.shape[0]):
        if t[i] != ignore_index:
            z[i] = lse_square_scale * lse[i] ** 2
    kept = int(np.sum(t != ignore_index))
    if reduction == "none":
        z_out = z.reshape(np.shape(target))
    elif reduction == "sum":
        z_out = np.asarray(z.sum())
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            z_out = np.asarray(z.sum() / kept) if kept else np.asarray(np.nan)
    loss = ce + z_out
    return (loss, z_out) if return_z_loss else loss
