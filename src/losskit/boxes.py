r"""Bounding-box regression losses on ``(x1, y1, x2, y2)`` boxes: the IoU family.

Every loss takes ``pred`` and ``target`` of the same shape ``(..., 4)`` (usually ``(N, 4)``) and
returns one loss per box for ``reduction="none"`` (shape ``(...)``), or their mean or sum.

Notation, per pair of boxes (prediction :math:`B = (x_1, y_1, x_2, y_2)`, target :math:`B^{gt}`):
:math:`w, h` and :math:`w^{gt}, h^{gt}` the widths and heights, :math:`I` the intersection area,
:math:`U = wh + w^{gt}h^{gt} - I` the union, :math:`\mathrm{IoU} = I / (U + \varepsilon)`;
:math:`C_w, C_h` the width and height of the smallest enclosing box, :math:`c^2 = C_w^2 + C_h^2` its
squared diagonal; :math:`\Delta x, \Delta y` the offsets between the two box centres and
:math:`\rho^2 = \Delta x^2 + \Delta y^2`.

Edge cases (decided here, tested in tests/test_boxes.py):

* Zero-area and degenerate boxes (points, horizontal or vertical lines) and identical boxes are
  valid input. Every denominator is guarded by ``eps`` (``U + eps``, ``c^2 + eps``, ``h + eps`` in
  the CIoU aspect term, ``max(σ², eps)`` in the SIoU angle), so the value and the gradient are
  finite for all of them; torchvision's CIoU divides by ``h`` without a guard (a NaN gradient for
  a line box, a NaN value for a point box). At exactly degenerate configurations the slope of a
  guard is of order ``1 / eps`` (e.g. GIoU of two identical lines, whose penalty jumps from 0 to 1
  when one line moves off the other): finite in float32/float64, but beyond the float16 range, so
  pass a larger ``eps`` (1e-3) if the boxes themselves are float16/bfloat16 leaves (under AMP,
  better compute box losses on float32 boxes).
* Two identical point boxes have IoU 0 (``0 / eps``): the loss is 1 for IoU-based terms.
* Boxes with ``x2 < x1`` or ``y2 < y1`` raise ``ValueError`` (a value check, skipped under
  ``losskit.set_checks("shapes")``).
* The ``mean`` of an empty set of boxes is 0 (with a zero gradient), not NaN, as in torchvision:
  a batch without matched boxes is routine in detection and must not poison the total loss.
  ``sum`` is 0.

Where torchvision has the loss (``generalized_box_iou_loss``, ``distance_box_iou_loss``,
``complete_box_iou_loss``, ``box_iou``) the values agree on valid boxes; torchvision's default
``reduction`` is ``"none"``, ours ``"mean"``, and boxes must be floating point here (torchvision
upcasts integer boxes).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ._checks import (
    any_true,
    check_bool,
    check_floating,
    check_range,
    check_same_device,
    check_same_shape,
    value_checks_enabled,
)
from ._precision import upcast
from ._reduction import check_reduction

__all__ = [
    "alpha_iou_loss",
    "box_iou",
    "ciou_loss",
    "diou_loss",
    "eiou_loss",
    "focal_eiou_loss",
    "giou_loss",
    "iou_loss",
    "siou_loss",
    "wiou_loss",
]


# ---------------------------------------------------------------- checks


def check_eps(eps: object, allow_zero: bool = False) -> float:
    """``eps`` must be a number > 0 (>= 0 for :func:`box_iou`)."""
    return check_range("eps", eps, 0.0, low_inclusive=allow_zero, finite=True)


def _check_valid_boxes(name: str, boxes: torch.Tensor) -> None:
    """Raise ``ValueError`` for a box with ``x2 < x1`` or ``y2 < y1`` (NaN included)."""
    if not value_checks_enabled() or boxes.numel() == 0:
        return
    x1, y1, x2, y2 = boxes.detach().unbind(-1)
    bad = ~((x2 >= x1) & (y2 >= y1))
    if any_true(bad):
        first = [float(v) for v in boxes.detach()[bad][0]]
        raise ValueError(
            f"{name} has a box with x2 < x1 or y2 < y1: {first}; boxes must be (x1, y1, x2, y2) "
            "with x1 <= x2 and y1 <= y2"
        )


def _check_box_tensor(name: str, boxes: object) -> torch.Tensor:
    boxes = check_floating(name, boxes)
    if boxes.dim() == 0 or boxes.shape[-1] != 4:
        raise ValueError(
            f"{name} must have shape (..., 4) with boxes as (x1, y1, x2, y2), "
            f"got shape {tuple(boxes.shape)}"
        )
    return boxes


def _check_pair(pred: object, target: object) -> tuple[torch.Tensor, torch.Tensor]:
    pred = _check_box_tensor("pred", pred)
    target = _check_box_tensor("target", target)
    check_same_shape("pred", pred, "target", target)
    if pred.dtype != target.dtype:
        raise TypeError(
            f"pred and target must have the same dtype, got {pred.dtype} and {target.dtype}"
        )
    check_same_device("target", target, pred, "pred")
    _check_valid_boxes("pred", pred)
    _check_valid_boxes("target", target)
    return pred, target


def _reduce_boxes(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    # As torchvision: the mean of no boxes is 0 (keeping the graph), not NaN.
    if reduction == "none":
        return loss
    if reduction == "sum" or loss.numel() == 0:
        return loss.sum()
    return loss.mean()


# ---------------------------------------------------------------- geometry


class _Geometry(NamedTuple):
    """The quantities every IoU loss is built from (one entry per pair of boxes)."""

    iou: torch.Tensor
    union: torch.Tensor
    w: torch.Tensor
    h: torch.Tensor
    wg: torch.Tensor
    hg: torch.Tensor
    cw: torch.Tensor  # enclosing box width
    ch: torch.Tensor  # enclosing box height
    dx: torch.Tensor  # centre offset, pred - target
    dy: torch.Tensor


def _geometry(pred: torch.Tensor, target: torch.Tensor, eps: float) -> _Geometry:
    x1, y1, x2, y2 = pred.unbind(-1)
    x1g, y1g, x2g, y2g = target.unbind(-1)
    w, h = x2 - x1, y2 - y1
    wg, hg = x2g - x1g, y2g - y1g
    # relu, not clamp(min=0): a zero (sub)gradient where boxes just touch, as torchvision's mask.
    inter_w = F.relu(torch.minimum(x2, x2g) - torch.maximum(x1, x1g))
    inter_h = F.relu(torch.minimum(y2, y2g) - torch.maximum(y1, y1g))
    inter = inter_w * inter_h
    union = w * h + wg * hg - inter
    iou = inter / (union + eps)
    cw = torch.maximum(x2, x2g) - torch.minimum(x1, x1g)
    ch = torch.maximum(y2, y2g) - torch.minimum(y1, y1g)
    dx = (x1 + x2) / 2 - (x1g + x2g) / 2
    dy = (y1 + y2) / 2 - (y1g + y2g) / 2
    return _Geometry(iou, union, w, h, wg, hg, cw, ch, dx, dy)


def _prepare(
    pred: object, target: object, eps: object, reduction: object
) -> tuple[torch.Tensor, _Geometry, float, str]:
    pred, target = _check_pair(pred, target)
    eps = check_eps(eps)
    reduction = check_reduction(reduction)
    return pred, _geometry(upcast(pred), upcast(target), eps), eps, reduction


def _centre_term(g: _Geometry, eps: float) -> torch.Tensor:
    """DIoU penalty: squared centre distance over the squared enclosing diagonal."""
    return (g.dx**2 + g.dy**2) / (g.cw**2 + g.ch**2 + eps)


def _pow01(x: torch.Tensor, p: float) -> torch.Tensor:
    """``x ** p`` for ``x >= 0`` with a zero (not NaN/inf) gradient at ``x = 0`` for any ``p``."""
    if p == 0.0:
        return torch.ones_like(x)
    positive = x > 0
    safe = torch.where(positive, x, torch.ones_like(x))
    return torch.where(positive, safe**p, torch.zeros_like(x))


# ---------------------------------------------------------------- pairwise IoU


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    r"""Pairwise IoU of two sets of ``(x1, y1, x2, y2)`` boxes: an ``(N, M)`` matrix.

    .. math:: \mathrm{IoU}_{ij} = \frac{|B_i \cap B_j|}{|B_i \cup B_j| + \varepsilon}

    Args:
        boxes1: ``(N, 4)`` boxes.
        boxes2: ``(M, 4)`` boxes.
        eps: ``>= 0`` added to the union; ``eps=0`` gives torchvision's exact value (and NaN for
            two zero-area boxes), the default 1e-7 gives 0 there.

    Returns:
        ``(N, M)`` tensor, the dtype of ``boxes1``. Not differentiable at boxes that just touch
        (a zero subgradient is used).

    Example:
        >>> anchors = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]])
        >>> gt_boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0]])
        >>> losskit.boxes.box_iou(anchors, gt_boxes)  # (2, 1): 0.5 and 0

    Mirrors ``torchvision.ops.box_iou`` (plus ``eps``).
    """
    b1 = _check_box_tensor("boxes1", boxes1)
    b2 = _check_box_tensor("boxes2", boxes2)
    for name, b in (("boxes1", b1), ("boxes2", b2)):
        if b.dim() != 2:
            raise ValueError(f"{name} must be 2-D (N, 4), got shape {tuple(b.shape)}")
    if b1.dtype != b2.dtype:
        raise TypeError(
            f"boxes1 and boxes2 must have the same dtype, got {b1.dtype} and {b2.dtype}"
        )
    check_same_device("boxes2", b2, b1, "boxes1")
    eps = check_eps(eps, allow_zero=True)
    _check_valid_boxes("boxes1", b1)
    _check_valid_boxes("boxes2", b2)
    g = _geometry(upcast(b1)[:, None, :], upcast(b2)[None, :, :], eps)
    return g.iou.to(b1.dtype)


# ---------------------------------------------------------------- losses


def iou_loss(
    pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7, reduction: str = "mean"
) -> torch.Tensor:
    r"""IoU loss: :math:`1 - \mathrm{IoU}`.

    Zero gradient for disjoint boxes (use :func:`giou_loss` or :func:`diou_loss` there).

    Args:
        pred: predicted boxes ``(..., 4)`` as ``(x1, y1, x2, y2)``, floating.
        target: target boxes, the same shape.
        eps: ``> 0``, added to the union.
        reduction: ``"none"`` (shape ``(...)``), ``"mean"`` or ``"sum"``.

    Returns:
        Scalar, or ``pred.shape[:-1]`` for ``"none"``; the dtype of ``pred``.

    Edge cases: see :mod:`losskit.boxes` (degenerate boxes finite, empty ``mean`` is 0).

    Example:
        >>> pred_boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0]], requires_grad=True)
        >>> gt_boxes = torch.tensor([[1.0, 0.0, 3.0, 2.0]])
        >>> losskit.boxes.iou_loss(pred_boxes, gt_boxes).backward()  # loss 1 - 1/3

    Reference: Yu et al., "UnitBox", ACM MM 2016 (which uses :math:`-\ln \mathrm{IoU}`; the linear
    form :math:`1 - \mathrm{IoU}` used here is finite for disjoint boxes).
    """
    pred, g, _, reduction = _prepare(pred, target, eps, reduction)
    return _reduce_boxes(1.0 - g.iou, reduction).to(pred.dtype)


def giou_loss(
    pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7, reduction: str = "mean"
) -> torch.Tensor:
    r"""Generalized IoU loss.

    .. math:: 1 - \mathrm{IoU} + \frac{C_w C_h - U}{C_w C_h + \varepsilon}

    Args and returns as :func:`iou_loss`.

    Reference: Rezatofighi et al., "Generalized Intersection over Union", CVPR 2019. Matches
    ``torchvision.ops.generalized_box_iou_loss`` on valid boxes.
    """
    pred, g, eps, reduction = _prepare(pred, target, eps, reduction)
    area_c = g.cw * g.ch
    loss = 1.0 - g.iou + (area_c - g.union) / (area_c + eps)
    return _reduce_boxes(loss, reduction).to(pred.dtype)


def diou_loss(
    pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7, reduction: str = "mean"
) -> torch.Tensor:
    r"""Distance IoU loss.

    .. math:: 1 - \mathrm{IoU} + \frac{\rho^2}{c^2 + \varepsilon}

    Args and returns as :func:`iou_loss`.

    Reference: Zheng et al., "Distance-IoU Loss", AAAI 2020. Matches
    ``torchvision.ops.distance_box_iou_loss`` on valid boxes.
    """
    pred, g, eps, reduction = _prepare(pred, target, eps, reduction)
    loss = 1.0 - g.iou + _centre_term(g, eps)
    return _reduce_boxes(loss, reduction).to(pred.dtype)


def ciou_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    eps: float = 1e-7,
    reduction: str = "mean",
    detach_alpha: bool = True,
) -> torch.Tensor:
    r"""Complete IoU loss: DIoU plus an aspect-ratio consistency term.

    .. math::
        1 - \mathrm{IoU} + \frac{\rho^2}{c^2 + \varepsilon} + \alpha v, \quad
        v = \frac{4}{\pi^2}\Bigl(\arctan\frac{w^{gt}}{h^{gt} + \varepsilon}
            - \arctan\frac{w}{h + \varepsilon}\Bigr)^2, \quad
        \alpha = \frac{v}{1 - \mathrm{IoU} + v + \varepsilon}

    The ``+ eps`` under ``h`` is the guard torchvision lacks: a box of zero height gives a finite
    angle (:math:`\approx \pi/2`) instead of NaN; on valid boxes it changes the value by about
    ``eps / h``.

    Args:
        pred, target, eps, reduction: as :func:`iou_loss`.
        detach_alpha: ``True`` (default, as the paper's code and torchvision) treats the trade-off
            :math:`\alpha` as a constant in the backward pass; ``False`` differentiates through it
            (the gradient of the value as written).

    Returns:
        Scalar, or ``pred.shape[:-1]`` for ``"none"``.

    Reference: Zheng et al., "Distance-IoU Loss", AAAI 2020 (the conference form of
    :math:`\alpha`, without the journal version's ``IoU >= 0.5`` switch). Matches
    ``torchvision.ops.complete_box_iou_loss`` on valid boxes (values and, with
    ``detach_alpha=True``, gradients).
    """
    pred, g, eps, reduction = _prepare(pred, target, eps, reduction)
    detach_alpha = check_bool("detach_alpha", detach_alpha)
    angle_diff = torch.atan(g.wg / (g.hg + eps)) - torch.atan(g.w / (g.h + eps))
    v = (4.0 / math.pi**2) * angle_diff**2
    alpha = v / (1.0 - g.iou + v + eps)
    if detach_alpha:
        alpha = alpha.detach()
    loss = 1.0 - g.iou + _centre_term(g, eps) + alpha * v
    return _reduce_boxes(loss, reduction).to(pred.dtype)


def _eiou(g: _Geometry, eps: float) -> torch.Tensor:
    side = (g.w - g.wg) ** 2 / (g.cw**2 + eps) + (g.h - g.hg) ** 2 / (g.ch**2 + eps)
    return 1.0 - g.iou + _centre_term(g, eps) + side


def eiou_loss(
    pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7, reduction: str = "mean"
) -> torch.Tensor:
    r"""Efficient IoU loss: DIoU plus width and height differences over the enclosing box's sides.

    .. math::
        1 - \mathrm{IoU} + \frac{\rho^2}{c^2 + \varepsilon}
          + \frac{(w - w^{gt})^2}{C_w^2 + \varepsilon} + \frac{(h - h^{gt})^2}{C_h^2 + \varepsilon}

    Args and returns as :func:`iou_loss`.

    Reference: Zhang et al., "Focal and Efficient IOU Loss for Accurate Bounding Box Regression",
    Neurocomputing 2022 (arXiv:2101.08158).
    """
    pred, g, eps, reduction = _prepare(pred, target, eps, reduction)
    return _reduce_boxes(_eiou(g, eps), reduction).to(pred.dtype)


def focal_eiou_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    eps: float = 1e-7,
    reduction: str = "mean",
    gamma: float = 0.5,
) -> torch.Tensor:
    r"""Focal-EIoU loss: EIoU re-weighted by :math:`\mathrm{IoU}^\gamma`.

    .. math:: \mathrm{IoU}^\gamma \, L_{\mathrm{EIoU}}

    Emphasises high-IoU (good) boxes. The weight is differentiated as written (not detached).
    A pair with :math:`\mathrm{IoU} = 0` (disjoint boxes, or two identical point boxes) has loss
    0 and gradient 0 for ``gamma > 0``; for ``gamma < 1`` the gradient grows like
    :math:`\mathrm{IoU}^{\gamma - 1}` as the IoU tends to 0 but is finite at every non-zero IoU.
    ``gamma = 0`` is :func:`eiou_loss`.

    Args:
        pred, target, eps, reduction: as :func:`iou_loss`.
        gamma: :math:`\gamma \ge 0` (0.5 in the paper).

    Returns:
        Scalar, or ``pred.shape[:-1]`` for ``"none"``.

    Reference: Zhang et al. 2022 (arXiv:2101.08158), the Focal-EIoU loss.
    """
    pred, g, eps, reduction = _prepare(pred, target, eps, reduction)
    gamma = check_range("gamma", gamma, 0.0, finite=True)
    loss = _pow01(g.iou, gamma) * _eiou(g, eps)
    return _reduce_boxes(loss, reduction).to(pred.dtype)


def alpha_iou_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    eps: float = 1e-7,
    reduction: str = "mean",
    alpha: float = 3.0,
) -> torch.Tensor:
    r"""Alpha-IoU loss (the plain power form, on the IoU term only): :math:`1 - \mathrm{IoU}^\alpha`.

    This is the basic :math:`\alpha`-IoU of He et al. with the :math:`1/\alpha` factor
    dropped, as in the paper's experiments; ``alpha = 1`` is :func:`iou_loss`. The penalty-term
    variants (:math:`\alpha`-GIoU/DIoU/CIoU, which also raise the penalty to :math:`\alpha`) are
    not provided. :math:`\alpha > 1` up-weights the loss and gradient of high-IoU boxes.
    Where the IoU is 0 the gradient is 0 for every ``alpha`` (no ``inf`` for ``alpha < 1``).

    Args:
        pred, target, eps, reduction: as :func:`iou_loss`.
        alpha: :math:`\alpha > 0` (3 in the paper).

    Returns:
        Scalar, or ``pred.shape[:-1]`` for ``"none"``.

    Reference: He et al., "Alpha-IoU: A Family of Power Intersection over Union Losses for Bounding
    Box Regression", NeurIPS 2021.
    """
    pred, g, eps, reduction = _prepare(pred, target, eps, reduction)
    alpha = check_range("alpha", alpha, 0.0, low_inclusive=False, finite=True)
    return _reduce_boxes(1.0 - _pow01(g.iou, alpha), reduction).to(pred.dtype)


def siou_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    eps: float = 1e-7,
    reduction: str = "mean",
    theta: float = 4.0,
) -> torch.Tensor:
    r"""SCYLLA-IoU loss: IoU plus angle-aware distance and shape costs.

    .. math::
        1 - \mathrm{IoU} + \frac{\Delta + \Omega}{2}, \quad
        \Delta = \sum_{t \in \{x, y\}} \bigl(1 - e^{-(2 - \Lambda)\rho_t}\bigr), \quad
        \Omega = \sum_{t \in \{w, h\}} \bigl(1 - e^{-\omega_t}\bigr)^\theta

    with the angle cost :math:`\Lambda = 1 - 2\sin^2(\arcsin(|\Delta y| / \sigma) - \pi/4)`
    (:math:`\sigma = \rho`, the centre distance), :math:`\rho_x = \Delta x^2 / (C_w^2 + \varepsilon)`,
    :math:`\rho_y = \Delta y^2 / (C_h^2 + \varepsilon)` (enclosing box sides),
    :math:`\omega_w = |w - w^{gt}| / (\max(w, w^{gt}) + \varepsilon)` and likewise
    :math:`\omega_h`. The angle cost is computed in the equivalent closed form
    :math:`\Lambda = \sin 2\alpha = 2 |\Delta x| |\Delta y| / \max(\sigma^2, \varepsilon)`, which
    needs neither ``arcsin`` (infinite derivative at 1) nor the paper's switch between
    :math:`\alpha` and :math:`\beta = \pi/2 - \alpha` (:math:`\sin 2\alpha = \sin 2\beta`);
    coincident centres give :math:`\Lambda = 0`.

    Args:
        pred, target, eps, reduction: as :func:`iou_loss`.
        theta: :math:`\theta > 0`, the shape-cost exponent (4 in the paper; it suggests 2 to 6).

    Returns:
        Scalar, or ``pred.shape[:-1]`` for ``"none"``.

    Reference: Gevorgyan, "SIoU Loss: More Powerful Learning for Bounding Box Regression", 2022
    (arXiv:2205.12740).
    """
    pred, g, eps, reduction = _prepare(pred, target, eps, reduction)
    theta = check_range("theta", theta, 0.0, low_inclusive=False, finite=True)
    sigma_sq = (g.dx**2 + g.dy**2).clamp(min=eps)
    angle = 2.0 * g.dx.abs() * g.dy.abs() / sigma_sq
    gamma = 2.0 - angle
    rho_x = g.dx**2 / (g.cw**2 + eps)
    rho_y = g.dy**2 / (g.ch**2 + eps)
    distance = (1.0 - torch.exp(-gamma * rho_x)) + (1.0 - torch.exp(-gamma * rho_y))
    omega_w = (g.w - g.wg).abs() / (torch.maximum(g.w, g.wg) + eps)
    omega_h = (g.h - g.hg).abs() / (torch.maximum(g.h, g.hg) + eps)
    shape = _pow01(1.0 - torch.exp(-omega_w), theta) + _pow01(1.0 - torch.exp(-omega_h), theta)
    loss = 1.0 - g.iou + 0.5 * (distance + shape)
    return _reduce_boxes(loss, reduction).to(pred.dtype)


def wiou_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    eps: float = 1e-7,
    reduction: str = "mean",
    detach_enclosing: bool = True,
) -> torch.Tensor:
    r"""Wise-IoU v1: the IoU loss scaled by a distance-based attention :math:`R_{\mathrm{WIoU}}`.

    .. math::
        R_{\mathrm{WIoU}}\,(1 - \mathrm{IoU}), \quad
        R_{\mathrm{WIoU}} = \exp\Bigl(\frac{\rho^2}{(C_w^2 + C_h^2 + \varepsilon)^*}\Bigr)
        \in [1, e)

    where :math:`^*` marks the enclosing box size detached from the graph (the paper's choice:
    it stops gradients that would enlarge the enclosing box instead of moving the centres).
    Only v1 is provided (v2/v3 add a dynamic focusing factor built on a running mean of the loss).

    Args:
        pred, target, eps, reduction: as :func:`iou_loss`.
        detach_enclosing: ``True`` (default, the paper) detaches :math:`C_w^2 + C_h^2`; ``False``
            differentiates through it (the gradient of the value as written).

    Returns:
        Scalar, or ``pred.shape[:-1]`` for ``"none"``.

    Reference: Tong et al., "Wise-IoU: Bounding Box Regression Loss with Dynamic Focusing
    Mechanism", 2023 (arXiv:2301.10051), Wise-IoU v1.
    """
    pred, g, eps, reduction = _prepare(pred, target, eps, reduction)
    detach_enclosing = check_bool("detach_enclosing", detach_enclosing)
    diag_sq = g.cw**2 + g.ch**2 + eps
    if detach_enclosing:
        diag_sq = diag_sq.detach()
    loss = torch.exp((g.dx**2 + g.dy**2) / diag_sq) * (1.0 - g.iou)
    return _reduce_boxes(loss, reduction).to(pred.dtype)
