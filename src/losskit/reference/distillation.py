"""NumPy references of the distillation losses on logits (classes in the last dimension)."""

from __future__ import annotations

import numpy as np

from ._common import as_float, log_softmax

__all__ = ["distillation_kl_div", "jsd"]


def _reduce_rows(rows: np.ndarray, shape: tuple[int, ...], reduction: str) -> np.ndarray:
    if reduction == "none":
        return rows.reshape(shape[:-1])
    if reduction == "sum":
        return np.asarray(rows.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        if reduction == "mean":
            return np.asarray(rows.sum() / rows.size) if rows.size else np.asarray(np.nan)
        batch = shape[0] if len(shape) > 1 else 1
        return np.asarray(rows.sum() / batch) if batch else np.asarray(np.nan)


def distillation_kl_div(student_logits, teacher_logits, temperature=1.0, reduction="batchmean"):
    """``T^2 sum_c q_c (log q_c - log p_c)`` per row, ``p, q = softmax(s / T), softmax(t / T)``."""
    s, t = as_float(student_logits), as_float(teacher_logits)
    c = s.shape[-1]
    log_p = log_softmax(s.reshape(-1, c) / temperature, axis=1)
    log_q = log_softmax(t.reshape(-1, c) / temperature, axis=1)
    rows = np.zeros(log_p.shape[0])
    for i in range(log_p.shape[0]):
        for j in range(c):
            q = np.exp(log_q[i, j])
            if q > 0:
                rows[i] += q * (log_q[i, j] - log_p[i, j])
    return _reduce_rows(temperature**2 * rows, s.shape, reduction)


def jsd(student_logits, teacher_logits, beta=0.5, temperature=1.0, reduction="batchmean"):
    """``T^2 [beta KL(q || m) + (1 - beta) KL(p || m)]``, ``m = beta q + (1 - beta) p``."""
    s, t = as_float(student_logits), as_float(teacher_logits)
    c = s.shape[-1]
    p = np.exp(log_softmax(s.reshape(-1, c) / temperature, axis=1))
    q = np.exp(log_softmax(t.reshape(-1, c) / temperature, axis=1))
    m = beta * q + (1.0 - beta) * p
    rows = np.zeros(p.shape[0])
    for i in range(p.shape[0]):
        for j in range(c):
            if q[i, j] > 0:
                rows[i] += beta * q[i, j] * np.log(q[i, j] / m[i, j])
            if p[i, j] > 0:
                rows[i] += (1.0 - beta) * p[i, j] * np.log(p[i, j] / m[i, j])
    return _reduce_rows(temperature**2 * rows, s.shape, reduction)
