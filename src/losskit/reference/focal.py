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


def sigmoid_focal_loss(input, target, alpha=0.25, gamma=2.0, reduction="mean"):
    """``alpha_t (1 - p_t)^gamma BCE(x, y)`` with ``1 - p_t = (1 - y) σ(x) + y σ(-x)``."""
    x, y = as_float(input), as_float(target)
    q = (1.0 - y) * sigmoid(x) + y * sigmoid(-x)
    ce = -(y * log_sigmoid(x) + (1.0 - y) * log_sigmoid(-x))
    loss = _alpha_t(y, alpha) * q**gamma * ce
    return reduce(loss, reduction)


def sigmoid_focal_loss_grad(
    input, target, alpha=0.25, gamma=2.0, reduction="mean", grad_output=None
):
    """``d loss/dx = alpha_t [gamma q^gamma (1 - 2y) σ(x) σ(-x) / q · CE + q^gamma (σ(x) - y)]``.

    ``q = 1 - p_t``, ``dq/dx = (1 - 2y) σ(x) σ(-x)``; the ratio ``σ(x) σ(-x) / q`` (at most 1) is
    taken in log space, so the gradient is finite where ``q`` underflows, for any ``gamma >= 0``.
    """
    x, y = as_float(input), as_float(target)
    with np.errstate(divide="ignore"):
        log_q = np.logaddexp(log_sigmoid(x) + np.log1p(-y), log_sigmoid(-x) + np.log(y))
    q_gamma = np.exp(gamma * log_q)
    ratio = np.exp(log_sigmoid(x) + log_sigmoid(-x) - log_q)
    ce = -(y * log_sigmoid(x) + (1.0 - y) * log_sigmoid(-x))
    # σ(x) - y written as (1 - y) σ(x) - y σ(-x): no cancellation as σ(x) -> y.
    dce = (1.0 - y) * sigmoid(x) - y * sigmoid(-x)
    g = gamma * q_gamma * (1.0 - 2.0 * y) * ratio * ce + q_gamma * dce
    g = _alpha_t(y, alpha) * g
    if reduction == "none":
        return g * upstream(grad_output, x.shape)
    scale = 1.0 / x.size if reduction == "mean" else 1.0
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

    With ``s = sum_{c != y} exp(x_c - x_y)``: ``u = s / (1 + s)`` and
    ``log(p_y) / u = -log1p(s) (1 + s) / s``, whose limit at ``s = 0`` is ``-1``.
    """
    x = as_float(input)
    rows = _classes_last(x)
    p = np.exp(log_softmax(rows, axis=1))
    n, c = rows.shape
    w = _class_weights(alpha, c)
    t = np.asarray(target).reshape(-1).astype(np.int64)
    g = np.zeros((n, c))
    weight_sum = 0.0
    for i in range(n):
        if t[i] == ignore_index:
            continue
        y = t[i]
        s = np.sum(np.exp(np.delete(rows[i], y) - rows[i, y]))
        u = s / (1.0 + s)
        log_p_over_u = -1.0 if s == 0.0 else -np.log1p(s) * (1.0 + s) / s
        delta_minus_p = -p[i].copy()
        delta_minus_p[y] += 1.0
        g[i] = w[y] * delta_minus_p * u**gamma * (gamma * p[i, y] * log_p_over_u - 1.0)
        weight_sum += w[y]
    if reduction == "none":
        go = upstream(grad_output, _positions_shape(x)).reshape(-1, 1)
        return _restore_classes(g * go, x)
    # All ignored: the mean is NaN everywhere, its gradient 0 (as torch).
    scale = 1.0 / weight_sum if reduction == "mean" and weight_sum else 1.0
    return _restore_classes(g * scale * float(upstream(grad_output, ())), x)
