"""NumPy references of the focal losses, with their closed-form gradients.

``*_grad`` functions give the analytic gradient of ``sum(grad_output * loss)`` with respect to
``input``. The factor ``1 - p_t`` is written as a sum of probabilities (never ``1 - p``), so the
references stay accurate when ``p_t`` is close to 1.
"""

from __future__ import annotations

import numpy as np

from ._common import as_float, log_sigmoid, log_softmax, reduce, sigmoid, upstream

__all__ = [
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_grad",
    "softmax_focal_loss",
    "softmax_focal_loss_grad",
]


def _alpha_t(y: np.ndarray, alpha: float) -> np.ndarray | float:
    return alpha * y + (1.0 - alpha) * (1.0 - y) if alpha >= 0 else 1.0


def _binary_parts(target, weight, pos_weight, ignore_index, shape):
    """Labels (ignored ones set to 0), the kept mask, and weight / pos_weight broadcast."""
    y = as_float(target)
    keep = np.ones(shape, dtype=bool) if ignore_index is None else y != ignore_index
    y = np.where(keep, y, 0.0)
    w = np.ones(shape) if weight is None else np.broadcast_to(as_float(weight), shape)
    pw = np.ones(shape) if pos_weight is None else np.broadcast_to(as_float(pos_weight), shape)
    return y, keep, w, pw


def sigmoid_focal_loss(
    input,
    target,
    alpha=0.25,
    gamma=2.0,
    reduction="mean",
    weight=None,
    pos_weight=None,
    ignore_index=None,
):
    """``w alpha_t (1 - p_t)^gamma BCE_pw(x, y)``, ``1 - p_t = (1 - y) σ(x) + y σ(-x)``,
    ``BCE_pw = -[pw y log σ(x) + (1 - y) log σ(-x)]``; ignored elements are left out (``mean``
    over the kept ones, 0 in ``none``)."""
    x = as_float(input)
    y, keep, w, pw = _binary_parts(target, weight, pos_weight, ignore_index, x.shape)
    q = (1.0 - y) * sigmoid(x) + y * sigmoid(-x)
    ce = -(pw * y * log_sigmoid(x) + (1.0 - y) * log_sigmoid(-x))
    loss = np.where(keep, w * _alpha_t(y, alpha) * q**gamma * ce, 0.0)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(loss.sum() / keep.sum())
    return reduce(loss, reduction)


def sigmoid_focal_loss_grad(
    input,
    target,
    alpha=0.25,
    gamma=2.0,
    reduction="mean",
    weight=None,
    pos_weight=None,
    ignore_index=None,
    grad_output=None,
):
    """``d loss/dx = w alpha_t [gamma q^gamma (1 - 2y) σ(x) σ(-x) / q · CE + q^gamma dCE]``.

    ``q = 1 - p_t``, ``dq/dx = (1 - 2y) σ(x) σ(-x)``, ``dCE = (1 - y) σ(x) - pw y σ(-x)``; the
    ratio ``σ(x) σ(-x) / q`` (at most 1) is taken in log space, so the gradient is finite where
    ``q`` underflows, for any ``gamma >= 0``. Ignored elements: 0.
    """
    x = as_float(input)
    y, keep, w, pw = _binary_parts(target, weight, pos_weight, ignore_index, x.shape)
    with np.errstate(divide="ignore"):
        log_q = np.logaddexp(log_sigmoid(x) + np.log1p(-y), log_sigmoid(-x) + np.log(y))
    q_gamma = np.exp(gamma * log_q)
    ratio = np.exp(log_sigmoid(x) + log_sigmoid(-x) - log_q)
    ce = -(pw * y * log_sigmoid(x) + (1.0 - y) * log_sigmoid(-x))
    # σ(x) - y written as (1 - y) σ(x) - y σ(-x): no cancellation as σ(x) -> y.
    dce = (1.0 - y) * sigmoid(x) - pw * y * sigmoid(-x)
    g = gamma * q_gamma * (1.0 - 2.0 * y) * ratio * ce + q_gamma * dce
    g = np.where(keep, w * _alpha_t(y, alpha) * g, 0.0)
    if reduction == "none":
        return g * upstream(grad_output, x.shape)
    count = keep.sum()
    scale = (1.0 / count if count else 0.0) if reduction == "mean" else 1.0
    return g * scale * float(upstream(grad_output, ()))


def _classes_last(x: np.ndarray) -> np.ndarray:
    """(C,) -> (1, C); (N, C, d1..dK) -> (N·d1···dK, C)."""
    return x[None, :] if x.ndim == 1 else np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _positions_shape(x: np.ndarray) -> tuple[int, ...]:
    return () if x.ndim == 1 else (x.shape[0], *x.shape[2:])


def _restore_classes(g: np.ndarray, like: np.ndarray) -> np.ndarray:
    if like.ndim == 1:
        return g[0]
    return np.moveaxis(g.reshape(like.shape[0], *like.shape[2:], like.shape[1]), -1, 1)


def _class_weights(alpha, c: int) -> np.ndarray:
    return np.ones(c) if alpha is None else as_float(alpha)


def softmax_focal_loss(input, target, alpha=None, gamma=2.0, ignore_index=-100, reduction="mean"):
    """``-alpha_y (1 - p_y)^gamma log p_y`` per position, ``1 - p_y = sum_{c != y} p_c``;
    ``mean`` divides by the summed ``alpha_y`` of the non-ignored positions (NaN if none)."""
    x = as_float(input)
    logp = log_softmax(_classes_last(x), axis=1)
    n, c = logp.shape
    w = _class_weights(alpha, c)
    t = np.asarray(target).reshape(-1).astype(np.int64)
    loss = np.zeros(n)
    weight_sum = 0.0
    for i in range(n):  # plain loop: clarity over speed
        if t[i] == ignore_index:
            continue
        y = t[i]
        u = np.sum(np.exp(np.delete(logp[i], y)))
        loss[i] = -w[y] * u**gamma * logp[i, y]
        weight_sum += w[y]
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(loss.sum() / weight_sum)
    return reduce(loss.reshape(_positions_shape(x)), reduction)


def softmax_focal_loss_grad(
    input,
    target,
    alpha=None,
    gamma=2.0,
    ignore_index=-100,
    reduction="mean",
    grad_output=None,
):
    """``d loss_i/dx_c = alpha_y (δ_cy - p_c) u^gamma [gamma p_y log(p_y) / u - 1]``, ``u = 1 - p_y``.

    Everything from ``t = log s``, ``s = sum_{c != y} exp(x_c - x_y)`` (a logsumexp, finite at
    logits ±1e4): ``-log p_y = log1p(s) = logaddexp(0, t)``, ``log u = t - logaddexp(0, t)``,
    and ``-log(p_y) / u = log1p(s) (1 + s) / s`` (limit 1 at ``s = 0``); ``δ_yy - p_y = u``.
    """
    x = as_float(input)
    rows = _classes_last(x)
    log_p = log_softmax(rows, axis=1)
    n, c = rows.shape
    w = _class_weights(alpha, c)
    t = np.asarray(target).reshape(-1).astype(np.int64)
    g = np.zeros((n, c))
    weight_sum = 0.0
    for i in range(n):
        if t[i] == ignore_index:
            continue
        y = t[i]
        others = np.delete(rows[i], y) - rows[i, y]
        if others.size == 0:  # one class: u = 0, the loss and its gradient are 0
            weight_sum += w[y]
            continue
        log_s = np.max(others) + np.log(np.sum(np.exp(others - np.max(others))))
        nll = np.logaddexp(0.0, log_s)  # -log p_y
        u = np.exp(log_s - nll)
        p_y = np.exp(-nll)
        if log_s < 0.0:
            s = np.exp(log_s)
            nll_over_u = np.log1p(s) * (1.0 + s) / s if s > 0.0 else 1.0
        else:
            nll_over_u = nll / u
        delta_minus_p = -np.exp(log_p[i])
        delta_minus_p[y] = u
        g[i] = -w[y] * delta_minus_p * u**gamma * (gamma * p_y * nll_over_u + 1.0)
        weight_sum += w[y]
    if reduction == "none":
        go = upstream(grad_output, _positions_shape(x)).reshape(-1, 1)
        return _restore_classes(g * go, x)
    # All ignored: the mean is NaN everywhere, its gradient 0 (as torch).
    scale = 1.0 / weight_sum if reduction == "mean" and weight_sum else 1.0
    return _restore_classes(g * scale * float(upstream(grad_output, ())), x)
