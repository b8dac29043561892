"""NumPy references of the box regression losses: one pair of boxes at a time, plain ``math``.

Each loss is written per pair of ``(x1, y1, x2, y2)`` boxes as the paper states it (the SIoU angle
cost with its ``arcsin`` and the switch between alpha and beta), with the same ``eps`` guards as
:mod:`losskit.boxes`. The mean of no boxes is 0, as in torchvision.
"""

from __future__ import annotations

import math

import numpy as np

from ._common import as_float

__all__ = [
    "alpha_iou_loss",
    "box_iou",
    "box_iou_matrix",
    "ciou_loss",
    "ciou_matrix",
    "diou_loss",
    "diou_matrix",
    "eiou_loss",
    "focal_eiou_loss",
    "giou_loss",
    "giou_matrix",
    "iou_loss",
    "siou_loss",
    "wiou_loss",
]


def _div(num: float, den: float, eps: float) -> float:
    """``num / (den + eps)``, with ``0 / 0`` (only possible for ``eps = 0``) taken as 0."""
    den = den + eps
    return num / den if den != 0 else 0.0


def _angle(w: float, h: float) -> float:
    """``atan(w / h)``; ``pi / 2`` for ``h = 0 < w``, 0 for a point."""
    if h > 0:
        return math.atan(w / h)
    return math.pi / 2 if w > 0 else 0.0


class _Pair:
    """Geometry of one predicted box ``p`` and one target box ``t``."""

    def __init__(self, p, t, eps: float) -> None:
        x1, y1, x2, y2 = (float(v) for v in p)
        gx1, gy1, gx2, gy2 = (float(v) for v in t)
        self.w, self.h = x2 - x1, y2 - y1
        self.wg, self.hg = gx2 - gx1, gy2 - gy1
        inter_w = max(0.0, min(x2, gx2) - max(x1, gx1))
        inter_h = max(0.0, min(y2, gy2) - max(y1, gy1))
        inter = inter_w * inter_h
        self.union = self.w * self.h + self.wg * self.hg - inter
        self.inter = inter
        self.iou = _div(inter, self.union, eps)
        self.cw = max(x2, gx2) - min(x1, gx1)
        self.ch = max(y2, gy2) - min(y1, gy1)
        self.dx = (x1 + x2) / 2 - (gx1 + gx2) / 2
        self.dy = (y1 + y2) / 2 - (gy1 + gy2) / 2
        self.eps = eps

    def centre_term(self) -> float:
        return (self.dx**2 + self.dy**2) / (self.cw**2 + self.ch**2 + self.eps)

    def eiou(self) -> float:
        e = self.eps
        return (
            1.0
            - self.iou
            + self.centre_term()
            + (self.w - self.wg) ** 2 / (self.cw**2 + e)
            + (self.h - self.hg) ** 2 / (self.ch**2 + e)
        )


def _per_pair(pred, target, eps, reduction, fn) -> np.ndarray:
    p, t = as_float(pred), as_float(target)
    out_shape = p.shape[:-1]
    p2, t2 = p.reshape(-1, 4), t.reshape(-1, 4)
    loss = np.array([fn(_Pair(p2[i], t2[i], eps)) for i in range(p2.shape[0])], dtype=np.float64)
    loss = loss.reshape(out_shape)
    if reduction == "none":
        return loss
    if reduction == "sum" or loss.size == 0:
        return np.asarray(loss.sum())
    if reduction == "mean":
        return np.asarray(loss.mean())
    raise ValueError(f"unknown reduction {reduction!r}")


def _matrix(boxes1, boxes2, eps, fn) -> np.ndarray:
    """``(N, M)`` matrix of ``fn(pair)`` over every pair, by a double loop."""
    b1, b2 = as_float(boxes1), as_float(boxes2)
    out = np.zeros((b1.shape[0], b2.shape[0]))
    for i in range(b1.shape[0]):
        for j in range(b2.shape[0]):
            out[i, j] = fn(_Pair(b1[i], b2[j], eps))
    return out


def box_iou_matrix(boxes1, boxes2, eps=0.0):
    """``intersection / (union + eps)`` for every pair (``0 / 0`` is 0)."""
    return _matrix(boxes1, boxes2, eps, lambda g: g.iou)


box_iou = box_iou_matrix


def giou_matrix(boxes1, boxes2, eps=0.0):
    """``IoU - (C - U) / (C + eps)`` for every pair, ``C`` the enclosing area."""
    return _matrix(
        boxes1, boxes2, eps, lambda g: g.iou - _div(g.cw * g.ch - g.union, g.cw * g.ch, eps)
    )


def _diou(g: _Pair, eps: float) -> float:
    exact_iou = _div(g.inter, g.union, 0.0)  # torchvision: eps on the diagonal only
    return exact_iou - _div(g.dx**2 + g.dy**2, g.cw**2 + g.ch**2, eps)


def diou_matrix(boxes1, boxes2, eps=1e-7):
    """``IoU - rho^2 / (c^2 + eps)`` for every pair (the IoU exact)."""
    return _matrix(boxes1, boxes2, eps, lambda g: _diou(g, eps))


def ciou_matrix(boxes1, boxes2, eps=1e-7, detach_alpha=True):
    """``DIoU - alpha v`` for every pair; ``detach_alpha`` changes gradients only."""

    def one(g: _Pair) -> float:
        exact_iou = _div(g.inter, g.union, 0.0)
        v = 4.0 / math.pi**2 * (_angle(g.w, g.h) - _angle(g.wg, g.hg)) ** 2
        return _diou(g, eps) - _div(v, 1.0 - exact_iou + v, eps) * v

    return _matrix(boxes1, boxes2, eps, one)


def iou_loss(pred, target, eps=1e-7, reduction="mean"):
    """``1 - IoU``."""
    return _per_pair(pred, target, eps, reduction, lambda g: 1.0 - g.iou)


def giou_loss(pred, target, eps=1e-7, reduction="mean"):
    """``1 - IoU + (C - U) / (C + eps)`` with ``C`` the enclosing box's area."""

    def one(g: _Pair) -> float:
        area_c = g.cw * g.ch
        return 1.0 - g.iou + (area_c - g.union) / (area_c + g.eps)

    return _per_pair(pred, target, eps, reduction, one)


def diou_loss(pred, target, eps=1e-7, reduction="mean"):
    """``1 - IoU + rho^2 / (c^2 + eps)``."""
    return _per_pair(pred, target, eps, reduction, lambda g: 1.0 - g.iou + g.centre_term())


def ciou_loss(pred, target, eps=1e-7, reduction="mean", detach_alpha=True):
    """DIoU + ``alpha v``; ``detach_alpha`` only changes gradients, not the value."""

    def one(g: _Pair) -> float:
        v = 4.0 / math.pi**2 * (_angle(g.wg, g.hg) - _angle(g.w, g.h)) ** 2
        alpha = v / (1.0 - g.iou + v + eps)
        return 1.0 - g.iou + g.centre_term() + alpha * v

    return _per_pair(pred, target, eps, reduction, one)


def eiou_loss(pred, target, eps=1e-7, reduction="mean"):
    """DIoU + ``(w - w_gt)^2 / (C_w^2 + eps) + (h - h_gt)^2 / (C_h^2 + eps)``."""
    return _per_pair(pred, target, eps, reduction, lambda g: g.eiou())


def focal_eiou_loss(pred, target, eps=1e-7, reduction="mean", gamma=0.5):
    """``IoU^gamma * EIoU`` (``0^0 = 1``)."""
    return _per_pair(pred, target, eps, reduction, lambda g: g.iou**gamma * g.eiou())


def alpha_iou_loss(pred, target, eps=1e-7, reduction="mean", alpha=3.0):
    """``1 - IoU^alpha``."""
    return _per_pair(pred, target, eps, reduction, lambda g: 1.0 - g.iou**alpha)


def _siou_angle_cost(dx: float, dy: float, eps: float) -> float:
    """Gevorgyan's ``1 - 2 sin^2(arcsin(x) - pi/4)``, ``x = sin(alpha)`` or ``sin(beta)``."""
    sigma_sq = dx**2 + dy**2
    if sigma_sq < eps:  # the guard of losskit.boxes: 2|dx||dy| / eps
        return 2.0 * abs(dx) * abs(dy) / eps
    sigma = math.sqrt(sigma_sq)
    alpha = math.asin(min(1.0, abs(dy) / sigma))
    # The paper minimises alpha if alpha <= pi/4, else beta = pi/2 - alpha (x = sin(beta)).
    x = math.sin(alpha) if alpha <= math.pi / 4 else min(1.0, abs(dx) / sigma)
    return 1.0 - 2.0 * math.sin(math.asin(x) - math.pi / 4) ** 2


def siou_loss(pred, target, eps=1e-7, reduction="mean", theta=4.0):
    """``1 - IoU + (distance cost + shape cost) / 2`` with the angle-aware distance cost."""

    def one(g: _Pair) -> float:
        gamma = 2.0 - _siou_angle_cost(g.dx, g.dy, eps)
        rho_x = g.dx**2 / (g.cw**2 + eps)
        rho_y = g.dy**2 / (g.ch**2 + eps)
        distance = (1.0 - math.exp(-gamma * rho_x)) + (1.0 - math.exp(-gamma * rho_y))
        omega_w = abs(g.w - g.wg) / (max(g.w, g.wg) + eps)
        omega_h = abs(g.h - g.hg) / (max(g.h, g.hg) + eps)
        shape = (1.0 - math.exp(-omega_w)) ** theta + (1.0 - math.exp(-omega_h)) ** theta
        return 1.0 - g.iou + 0.5 * (distance + shape)

    return _per_pair(pred, target, eps, reduction, one)


def wiou_loss(pred, target, eps=1e-7, reduction="mean", detach_enclosing=True):
    """``exp(rho^2 / (C_w^2 + C_h^2 + eps)) * (1 - IoU)``; the detach changes gradients only."""

    def one(g: _Pair) -> float:
        return math.exp((g.dx**2 + g.dy**2) / (g.cw**2 + g.ch**2 + eps)) * (1.0 - g.iou)

    return _per_pair(pred, target, eps, reduction, one)
