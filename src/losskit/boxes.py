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
  valid input. Every denominator of the losses is guarded by ``eps`` (``U + eps``, ``c^2 + eps``,
  ``max(σ², eps)`` in the SIoU angle) and the CIoU aspect angle is ``atan2(w, h)``, which is
  the paper's ``atan(w / h)`` on every box of non-zero height, ``π/2`` for a horizontal line and
  0 for a point; so the value and the gradient are finite for all of them; torchvision's CIoU
  divides by ``h`` without a guard (a NaN gradient for a line box, a NaN value for a point
  box). At exactly degenerate configurations the slope of a guard is of order ``1 / eps`` (e.g.
  GIoU of two identical lines, whose penalty jumps from 0 to 1 when one line moves off the
  other): finite in float32/float64, but beyond the float16 range, so
  pass a larger ``eps`` (1e-3) if the boxes themselves are float16/bfloat16 leaves (under AMP,
  better compute box losses on float32 boxes).
* Two identical point boxes have IoU 0 (``0 / eps``): the loss is 1 for IoU-based terms. The
  pairwise matrices (:func:`box_iou_matrix` and friends) are exact by default (``eps=0``) and
  define every ``0 / 0`` (the IoU of two zero-area boxes, the GIoU penalty of two boxes whose
  enclosing box has no area) as 0, where torchvision gives NaN.
* Boxes with ``x2 < x1`` or ``y2 < y1`` raise ``ValueError`` (a value check, skipped under
  ``losskit.set_checks("shapes")``).
* The ``mean`` of an empty set of boxes is 0 (with a zero gradient), not NaN, as in torchvision:
  a batch without matched boxes is routine in detection and must not poison the total loss.
  ``sum`` is 0.

Where torchvision has the loss or matrix (``generalized_box_iou_loss``,
``distance_box_iou_loss``, ``complete_box_iou_loss``, ``box_iou``, ``generalized_box_iou``,
``distance_box_iou``, ``complete_box_iou``) the values agree on valid boxes; torchvision's default
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
from ._dispatch import Backends
from ._precision import upcast
from ._reduction import EMPTY_ZERO, check_reduction, reduce

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
    return reduce(loss, reduction, empty=EMPTY_ZERO)


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


def _ratio(num: torch.Tensor, den: torch.Tensor, eps: float) -> torch.Tensor:
    """``num / (den + eps)``; for ``eps = 0`` the exact ``num / den``, with ``0 / 0`` taken as 0.

    (``den >= 0`` throughout: a union, an enclosing area or diagonal; ``num = 0`` where it is 0.)
    The ``where`` keeps the gradient finite there too.
    """
    if eps > 0.0:
        return num / (den + eps)
    positive = den > 0
    return torch.where(positive, num / torch.where(positive, den, 1.0), 0.0)


def _aspect_angle(w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """CIoU's ``atan(w / h)``: exactly that for ``h > 0``, ``π/2`` for a line of zero height, 0
    for a point (``atan2(0, 0)``, with a zero gradient instead of ``0 / 0``)."""
    point = (w == 0) & (h == 0)
    return torch.where(
        point, 0.0, torch.atan2(torch.where(point, 1.0, w), torch.where(point, 1.0, h))
    )


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
    iou = _ratio(inter, union, eps)
    cw = torch.maximum(x2, x2g) - torch.minimum(x1, x1g)
    ch = torch.maximum(y2, y2g) - torch.minimum(y1, y1g)
    dx = (x1 + x2) / 2 - (x1g + x2g) / 2
    dy = (y1 + y2) / 2 - (y1g + y2g) / 2
    return _Geometry(iou, union, w, h, wg, hg, cw, ch, dx, dy)


def _validate(
    pred: object, target: object, eps: object, reduction: object
) -> tuple[torch.Tensor, torch.Tensor, float, str]:
    pred, target = _check_pair(pred, target)
    return pred, target, check_eps(eps), check_reduction(reduction)


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


def _check_box_sets(
    boxes1: object, boxes2: object, eps: object, allow_zero: bool = True
) -> tuple[torch.Tensor, torch.Tensor, float]:
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
    eps = check_eps(eps, allow_zero=allow_zero)
    _check_valid_boxes("boxes1", b1)
    _check_valid_boxes("boxes2", b2)
    return b1, b2, eps


def _pairwise(b1: torch.Tensor, b2: torch.Tensor, eps: float) -> _Geometry:
    """The geometry of every pair ``(boxes1[i], boxes2[j])``: ``(N, M)`` entries."""
    return _geometry(upcast(b1)[:, None, :], upcast(b2)[None, :, :], eps)


def box_iou_matrix(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    r"""Pairwise IoU of two sets of ``(x1, y1, x2, y2)`` boxes: an ``(N, M)`` matrix.

    .. math:: \mathrm{IoU}_{ij} = \frac{|B_i \cap B_j|}{|B_i \cup B_j| + \varepsilon}

    Exact by default: IoU is a metric, and an ``eps`` in the denominator biases it most where
    boxes are small (two identical boxes of side 1e-3 have IoU 0.909 with ``eps=1e-7``, 1.0
    here). ``box_iou`` is the same function.

    Args:
        boxes1: ``(N, 4)`` boxes, floating, ``x1 <= x2`` and ``y1 <= y2``.
        boxes2: ``(M, 4)`` boxes, the same dtype and device.
        eps: ``>= 0`` added to the union (0, the default, gives the exact ratio).

    Returns:
        ``(N, M)`` tensor in ``[0, 1]``, the dtype of ``boxes1``; differentiable (a zero
        subgradient where boxes just touch).

    Edge cases: the IoU of two zero-area boxes (``0 / 0``) is 0 (torchvision: NaN); empty sets
    give an empty ``(N, M)`` matrix.

    Example:
        >>> anchors = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]])
        >>> gt_boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0]])
        >>> losskit.boxes.box_iou_matrix(anchors, gt_boxes)
        tensor([[0.5000],
                [0.0000]])

    Mirrors ``torchvision.ops.box_iou`` (plus ``eps``, and 0 instead of NaN for ``0 / 0``).
    """
    b1, b2, eps = _check_box_sets(boxes1, boxes2, eps)
    return _pairwise(b1, b2, eps).iou.to(b1.dtype)


box_iou = box_iou_matrix


def giou_matrix(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    r"""Pairwise generalized IoU: an ``(N, M)`` matrix in ``[-1, 1]``.

    .. math::
        \mathrm{GIoU}_{ij} = \mathrm{IoU}_{ij} - \frac{|C_{ij}| - |B_i \cup B_j|}{|C_{ij}| +
        \varepsilon}

    with :math:`C_{ij}` the smallest box enclosing both (the IoU as :func:`box_iou_matrix`,
    with the same ``eps``). The cost matrix of DETR-style matching.

    Args:
        boxes1: ``(N, 4)`` boxes.
        boxes2: ``(M, 4)`` boxes, the same dtype and device.
        eps: ``>= 0`` added to the union and to the enclosing area (0: exact).

    Returns:
        ``(N, M)`` tensor, the dtype of ``boxes1``.

    Edge cases: every ``0 / 0`` (two zero-area boxes; an enclosing box without area, e.g. two
    points or two collinear lines) is 0, where torchvision gives NaN.

    Example:
        >>> a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
        >>> b = torch.tensor([[2.0, 0.0, 3.0, 1.0]])
        >>> losskit.boxes.giou_matrix(a, b)  # IoU 0, penalty (3 - 2) / 3
        tensor([[-0.3333]])

    Mirrors ``torchvision.ops.generalized_box_iou``.
    """
    b1, b2, eps = _check_box_sets(boxes1, boxes2, eps)
    g = _pairwise(b1, b2, eps)
    area_c = g.cw * g.ch
    return (g.iou - _ratio(area_c - g.union, area_c, eps)).to(b1.dtype)


def _diou_matrix(b1: torch.Tensor, b2: torch.Tensor, eps: float) -> tuple[torch.Tensor, _Geometry]:
    # As torchvision: eps on the diagonal only, the IoU term exact.
    g = _pairwise(b1, b2, 0.0)
    centre = _ratio(g.dx**2 + g.dy**2, g.cw**2 + g.ch**2, eps)
    return g.iou - centre, g


def diou_matrix(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    r"""Pairwise distance IoU: an ``(N, M)`` matrix in ``[-1, 1]``.

    .. math:: \mathrm{DIoU}_{ij} = \mathrm{IoU}_{ij} - \frac{\rho_{ij}^2}{c_{ij}^2 + \varepsilon}

    with :math:`\rho` the distance between the centres and :math:`c` the diagonal of the
    enclosing box; the IoU term is exact (as torchvision, ``eps`` only guards the diagonal).

    Args:
        boxes1: ``(N, 4)`` boxes.
        boxes2: ``(M, 4)`` boxes, the same dtype and device.
        eps: ``>= 0`` added to :math:`c^2` (torchvision's default 1e-7; 0 gives the exact ratio,
            with ``0 / 0`` for two identical points taken as 0).

    Returns:
        ``(N, M)`` tensor, the dtype of ``boxes1``.

    Example:
        >>> a = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
        >>> losskit.boxes.diou_matrix(a, a + 2.0, eps=0.0)  # IoU 0, rho^2 / c^2 = 8 / 18
        tensor([[-0.4444]])

    Mirrors ``torchvision.ops.distance_box_iou``.
    """
    b1, b2, eps = _check_box_sets(boxes1, boxes2, eps)
    return _diou_matrix(b1, b2, eps)[0].to(b1.dtype)


def ciou_matrix(
    boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7, detach_alpha: bool = True
) -> torch.Tensor:
    r"""Pairwise complete IoU: DIoU minus the aspect-ratio term, an ``(N, M)`` matrix.

    .. math::
        \mathrm{CIoU}_{ij} = \mathrm{DIoU}_{ij} - \alpha v, \quad
        v = \frac{4}{\pi^2}\Bigl(\arctan\frac{w_i}{h_i} - \arctan\frac{w_j}{h_j}\Bigr)^2, \quad
        \alpha = \frac{v}{1 - \mathrm{IoU}_{ij} + v + \varepsilon}

    The angles as :func:`ciou_loss` (``atan2``: the paper's ``atan(w / h)`` on boxes of
    non-zero height, ``π/2`` for a horizontal line, 0 for a point).

    Args:
        boxes1: ``(N, 4)`` boxes.
        boxes2: ``(M, 4)`` boxes, the same dtype and device.
        eps: ``>= 0`` (default 1e-7, torchvision's) added to :math:`c^2` and to the denominator
            of :math:`\alpha`.
        detach_alpha: ``True`` (default, as torchvision) treats :math:`\alpha` as a constant in
            the backward pass.

    Returns:
        ``(N, M)`` tensor, the dtype of ``boxes1``.

    Example:
        >>> a = torch.tensor([[0.0, 0.0, 2.0, 1.0]])
        >>> b = torch.tensor([[0.0, 0.0, 1.0, 2.0]])
        >>> losskit.boxes.ciou_matrix(a, b).shape
        torch.Size([1, 1])

    Mirrors ``torchvision.ops.complete_box_iou`` (finite where it gives NaN: boxes of zero
    height).
    """
    b1, b2, eps = _check_box_sets(boxes1, boxes2, eps)
    detach_alpha = check_bool("detach_alpha", detach_alpha)
    diou, g = _diou_matrix(b1, b2, eps)
    return (diou - _ciou_alpha_v(g.iou, g.w, g.h, g.wg, g.hg, eps, detach_alpha)).to(b1.dtype)


# ---------------------------------------------------------------- losses


def _iou_loss_formula(
    pred: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    reduction: str,
) -> torch.Tensor:
    g = _geometry(upcast(pred), upcast(target), eps)
    return _reduce_boxes(1.0 - g.iou, reduction).to(pred.dtype)


_IOU = Backends("iou_loss", formula=_iou_loss_formula)


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
    pred, target, eps, reduction = _validate(pred, target, eps, reduction)
    return _IOU(pred, target, eps, reduction)


iou_loss.backends = _IOU  # type: ignore[attr-defined]


def _giou_loss_formula(
    pred: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    reduction: str,
) -> torch.Tensor:
    g = _geometry(upcast(pred), upcast(target), eps)
    area_c = g.cw * g.ch
    loss = 1.0 - g.iou + (area_c - g.union) / (area_c + eps)
    return _reduce_boxes(loss, reduction).to(pred.dtype)


_GIOU = Backends("giou_loss", formula=_giou_loss_formula)


def giou_loss(
    pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7, reduction: str = "mean"
) -> torch.Tensor:
    r"""Generalized IoU loss.

    .. math:: 1 - \mathrm{IoU} + \frac{C_w C_h - U}{C_w C_h + \varepsilon}

    Args and returns as :func:`iou_loss`.

    Reference: Rezatofighi et al., "Generalized Intersection over Union", CVPR 2019. Matches
    ``torchvision.ops.generalized_box_iou_loss`` on valid boxes.
    """
    pred, target, eps, reduction = _validate(pred, target, eps, reduction)
    return _GIOU(pred, target, eps, reduction)


giou_loss.backends = _GIOU  # type: ignore[attr-defined]


def _diou_loss_formula(
    pred: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    reduction: str,
) -> torch.Tensor:
    g = _geometry(upcast(pred), upcast(target), eps)
    loss = 1.0 - g.iou + _centre_term(g, eps)
    return _reduce_boxes(loss, reduction).to(pred.dtype)


_DIOU = Backends("diou_loss", formula=_diou_loss_formula)


def diou_loss(
    pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7, reduction: str = "mean"
) -> torch.Tensor:
    r"""Distance IoU loss.

    .. math:: 1 - \mathrm{IoU} + \frac{\rho^2}{c^2 + \varepsilon}

    Args and returns as :func:`iou_loss`.

    Reference: Zheng et al., "Distance-IoU Loss", AAAI 2020. Matches
    ``torchvision.ops.distance_box_iou_loss`` on valid boxes.
    """
    pred, target, eps, reduction = _validate(pred, target, eps, reduction)
    return _DIOU(pred, target, eps, reduction)


diou_loss.backends = _DIOU  # type: ignore[attr-defined]


def _ciou_alpha_v(
    iou: torch.Tensor,
    w: torch.Tensor,
    h: torch.Tensor,
    wg: torch.Tensor,
    hg: torch.Tensor,
    eps: float,
    detach_alpha: bool,
) -> torch.Tensor:
    """CIoU's aspect penalty ``alpha v`` (the trade-off ``alpha`` detached if asked)."""
    v = (4.0 / math.pi**2) * (_aspect_angle(wg, hg) - _aspect_angle(w, h)) ** 2
    alpha = _ratio(v, 1.0 - iou + v, eps)
    if detach_alpha:
        alpha = alpha.detach()
    return alpha * v


def _ciou_loss_formula(
    pred: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    reduction: str,
    detach_alpha: bool,
) -> torch.Tensor:
    g = _geometry(upcast(pred), upcast(target), eps)
    alpha_v = _ciou_alpha_v(g.iou, g.w, g.h, g.wg, g.hg, eps, detach_alpha)
    loss = 1.0 - g.iou + _centre_term(g, eps) + alpha_v
    return _reduce_boxes(loss, reduction).to(pred.dtype)


_CIOU = Backends("ciou_loss", formula=_ciou_loss_formula)


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
        v = \frac{4}{\pi^2}\Bigl(\arctan\frac{w^{gt}}{h^{gt}}
            - \arctan\frac{w}{h}\Bigr)^2, \quad
        \alpha = \frac{v}{1 - \mathrm{IoU} + v + \varepsilon}

    The angles are the paper's :math:`\arctan(w / h)` on every box of non-zero height, computed
    as ``atan2(w, h)``: the only guard is for the degenerate boxes torchvision gives NaN for (a
    horizontal line has angle :math:`\pi/2`, a point 0, both with finite gradients).

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
    pred, target, eps, reduction = _validate(pred, target, eps, reduction)
    detach_alpha = check_bool("detach_alpha", detach_alpha)
    return _CIOU(pred, target, eps, reduction, detach_alpha)


ciou_loss.backends = _CIOU  # type: ignore[attr-defined]


def _eiou(g: _Geometry, eps: float) -> torch.Tensor:
    side = (g.w - g.wg) ** 2 / (g.cw**2 + eps) + (g.h - g.hg) ** 2 / (g.ch**2 + eps)
    return 1.0 - g.iou + _centre_term(g, eps) + side


def _eiou_loss_formula(
    pred: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    reduction: str,
) -> torch.Tensor:
    g = _geometry(upcast(pred), upcast(target), eps)
    return _reduce_boxes(_eiou(g, eps), reduction).to(pred.dtype)


_EIOU = Backends("eiou_loss", formula=_eiou_loss_formula)


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
    pred, target, eps, reduction = _validate(pred, target, eps, reduction)
    return _EIOU(pred, target, eps, reduction)


eiou_loss.backends = _EIOU  # type: ignore[attr-defined]


def _focal_eiou_loss_formula(
    pred: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    reduction: str,
    gamma: float,
) -> torch.Tensor:
    g = _geometry(upcast(pred), upcast(target), eps)
    loss = _pow01(g.iou, gamma) * _eiou(g, eps)
    return _reduce_boxes(loss, reduction).to(pred.dtype)


_FOCAL_EIOU = Backends("focal_eiou_loss", formula=_focal_eiou_loss_formula)


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
    pred, target, eps, reduction = _validate(pred, target, eps, reduction)
    gamma = check_range("gamma", gamma, 0.0, finite=True)
    return _FOCAL_EIOU(pred, target, eps, reduction, gamma)


focal_eiou_loss.backends = _FOCAL_EIOU  # type: ignore[attr-defined]


def _alpha_iou_loss_formula(
    pred: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    reduction: str,
    alpha: float,
) -> torch.Tensor:
    g = _geometry(upcast(pred), upcast(target), eps)
    return _reduce_boxes(1.0 - _pow01(g.iou, alpha), reduction).to(pred.dtype)


_ALPHA_IOU = Backends("alpha_iou_loss", formula=_alpha_iou_loss_formula)


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
    pred, target, eps, reduction = _validate(pred, target, eps, reduction)
    alpha = check_range("alpha", alpha, 0.0, low_inclusive=False, finite=True)
    return _ALPHA_IOU(pred, target, eps, reduction, alpha)


alpha_iou_loss.backends = _ALPHA_IOU  # type: ignore[attr-defined]


def _siou_loss_formula(
    pred: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    reduction: str,
    theta: float,
) -> torch.Tensor:
    g = _geometry(upcast(pred), upcast(target), eps)
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


_SIOU = Backends("siou_loss", formula=_siou_loss_formula)


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
    pred, target, eps, reduction = _validate(pred, target, eps, reduction)
    theta = check_range("theta", theta, 0.0, low_inclusive=False, finite=True)
    return _SIOU(pred, target, eps, reduction, theta)


siou_loss.backends = _SIOU  # type: ignore[attr-defined]


def _wiou_loss_formula(
    pred: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    reduction: str,
    detach_enclosing: bool,
) -> torch.Tensor:
    g = _geometry(upcast(pred), upcast(target), eps)
    diag_sq = g.cw**2 + g.ch**2 + eps
    if detach_enclosing:
        diag_sq = diag_sq.detach()
    loss = torch.exp((g.dx**2 + g.dy**2) / diag_sq) * (1.0 - g.iou)
    return _reduce_boxes(loss, reduction).to(pred.dtype)


_WIOU = Backends("wiou_loss", formula=_wiou_loss_formula)


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
    pred, target, eps, reduction = _validate(pred, target, eps, reduction)
    detach_enclosing = check_bool("detach_enclosing", detach_enclosing)
    return _WIOU(pred, target, eps, reduction, detach_enclosing)


wiou_loss.backends = _WIOU  # type: ignore[attr-defined]
