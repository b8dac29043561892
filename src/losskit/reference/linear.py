"""NumPy references of the language-model head losses (linear cross entropy, z-loss)."""

from __future__ import annotations

import numpy as np

from ._common import as_float
from .classification import cross_entropy

__all__ = ["cross_entropy_with_z_loss", "linear_cross_entropy"]


def linear_cross_entropy(
    input,
    linear_weight,
    target,
    *,
    linear_bias=None,
    weight=None,
    reduction="mean",
    ignore_index=-100,
    label_smoothing=0.0,
    chunk_size=None,
):
    """``cross_entropy(input @ W.T + b, target)``: the full logits, no chunking."""
    x = as_float(input)
    w = as_float(linear_weight)
    out_shape = w.shape[:-1]
    logits = x @ w.reshape(-1, w.shape[-1]).T
    if linear_bias is not None:
        logits = logits + as_float(linear_bias).reshape(-1)
    logits = logits.reshape(*x.shape[:-1], *out_shape)
    return cross_entropy(logits, target, weight, ignore_index, reduction, label_smoothing)


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
