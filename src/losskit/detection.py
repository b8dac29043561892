r"""Losses of modern dense detection heads: GFL's quality and distribution focal losses,
VarifocalNet's varifocal loss and Libra R-CNN's balanced L1 loss.

They follow mmdetection's conventions (``mmdet/models/losses``), so that a head ported from it
gives the same numbers: an element weight ``weight`` multiplies the unreduced loss,
``reduction="mean"`` divides by the number of loss elements, or by ``avg_factor`` when one is
given (usually the number of positive anchors, reduced over the GPUs). The layout of every
functional is ``(input, target, weight=None, avg_factor=None, *, hyper-parameters,
reduction="mean")``, and a Module's ``forward(input, target, weight=None, avg_factor=None)`` is
mmdetection's ``forward`` (without ``reduction_override``; set ``reduction`` on the Module).

Deliberate differences from mmdetection, each stated in the loss's docstring too:

* the ``"mean"`` of no elements (no positive anchor in the batch) is 0 with a zero gradient, as
  for the box losses, not NaN; mmdetection's heads special-case it themselves;
* ``avg_factor`` divides exactly (mmdetection adds ``finfo(float32).eps``); a number must be
  ``> 0``, and it cannot be combined with ``"sum"`` (mmdetection raises too);
* targets are checked: out-of-range targets raise instead of indexing out of bounds.

Half-precision inputs are computed in float32 and the result returned in the input's dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import (
    any_true,
    check_bool,
    check_floating,
    check_integer,
    check_optional_floating,
    check_range,
    check_same_device,
    check_same_shape,
    check_tensor,
    check_values_in,
    value_checks_enabled,
)
from ._dispatch import Backends
from ._precision import upcast
from ._reduction import EMPTY_ZERO, check_reduction, reduce

__all__ = [
    "balanced_l1_loss",
    "distribution_focal_loss",
    "quality_focal_loss",
    "varifocal_loss",
]

AvgFactor = float | torch.Tensor | None


# ---------------------------------------------------------------- shared checks and reduction


def check_avg_factor(avg_factor: object, reduction: str) -> AvgFactor:
    """``None``, a number ``> 0`` or a 0-D tensor (not read: dividing by it costs no sync)."""
    if avg_factor is None:
        return None
    if reduction == "sum":
        raise ValueError('avg_factor can not be used with reduction="sum"')
    if isinstance(avg_factor, torch.Tensor):
        if avg_factor.dim() != 0 or avg_factor.is_complex() or avg_factor.dtype == torch.bool:
            raise ValueError(
                "avg_factor must be a number > 0 or a 0-D real tensor, got a tensor of shape "
                f"{tuple(avg_factor.shape)} and dtype {avg_factor.dtype}"
            )
        return avg_factor
    return check_range("avg_factor", avg_factor, 0.0, low_inclusive=False, finite=True)


def _check_weight(
    weight: object, loss_shape: torch.Size, like: torch.Tensor
) -> torch.Tensor | None:
    """``weight`` broadcasts to the unreduced loss's shape without enlarging it."""
    weight = check_optional_floating("weight", weight)
    if weight is None:
        return None
    check_same_device("weight", weight, like)
    try:
        shape = torch.broadcast_shapes(weight.shape, loss_shape)
    except RuntimeError:
        shape = None
    if shape != loss_shape:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} does not broadcast to the loss shape "
            f"{tuple(loss_shape)}"
        )
    return weight


def _weight_reduce(
    loss: torch.Tensor,
    weight: torch.Tensor | None,
    reduction: str,
    avg_factor: AvgFactor,
) -> torch.Tensor:
    """mmdetection's ``weight_reduce_loss``: times ``weight``, then none / mean / sum, where the
    mean divides by ``avg_factor`` if given. The mean of no elements is 0 (graph kept)."""
    if weight is not None:
        loss = loss * upcast(weight)
    if reduction == "mean" and avg_factor is not None:
        return loss.sum() / avg_factor
    return reduce(loss, reduction, empty=EMPTY_ZERO)


def _pow_abs(d: torch.Tensor, p: float) -> torch.Tensor:
    """``|d| ** p`` with a zero (not NaN) gradient at ``d = 0`` for every ``p >= 0``."""
    if p == 2.0:
        return d * d
    if p == 0.0:
        return torch.ones_like(d)
    a = d.abs()
    nonzero = a > 0
    return torch.where(nonzero, torch.where(nonzero, a, 1.0) ** p, 0.0)


def _check_unit_interval(name: str, t: torch.Tensor) -> None:
    check_values_in(name, t, 0.0, 1.0)


# ---------------------------------------------------------------- quality focal loss


def _qfl_dense_target(
    x: torch.Tensor, target: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """The quality target of every class: the score at the positive class, 0 elsewhere."""
    if isinstance(target, torch.Tensor):
        return target.detach().to(x.dtype)
    labels, scores = target
    num_classes = x.shape[-1]
    positive = labels < num_classes  # labels == C: background
    safe = torch.where(positive, labels, 0).long().unsqueeze(-1)
    score = torch.where(positive, scores.detach().to(x.dtype), 0.0).unsqueeze(-1)
    return torch.zeros_like(x).scatter_(-1, safe, score)


def _qfl_formula(
    input: torch.Tensor,
    target: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    weight: torch.Tensor | None,
    avg_factor: AvgFactor,
    beta: float,
    reduction: str,
) -> torch.Tensor:
    x = upcast(input)
    y = _qfl_dense_target(x, target)
    bce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    loss = (_pow_abs(y - torch.sigmoid(x), beta) * bce).sum(-1)
    return _weight_reduce(loss, weight, reduction, avg_factor).to(input.dtype)


_QFL = Backends("quality_focal_loss", formula=_qfl_formula)


def _check_qfl_target(
    input: torch.Tensor, target: object
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    if isinstance(target, torch.Tensor):
        target = check_floating("target", target)
        check_same_shape("input", input, "target", target)
        _check_unit_interval("target", target)
        return target
    if not (isinstance(target, (tuple, list)) and len(target) == 2):
        raise TypeError(
            "target must be a floating tensor of input's shape (dense quality targets) or a "
            f"pair (labels, scores), got {type(target).__name__}"
            + (f" of length {len(target)}" if isinstance(target, (tuple, list)) else "")
        )
    labels = check_integer("labels", check_tensor("labels", target[0]))
    scores = check_floating("scores", check_tensor("scores", target[1]))
    expected = tuple(input.shape[:-1])
    for name, t in (("labels", labels), ("scores", scores)):
        check_same_device(name, t, input)
        if tuple(t.shape) != expected:
            raise ValueError(
                f"{name} must have shape {expected} (input's shape without its class dimension), "
                f"got {tuple(t.shape)}"
            )
    num_classes = input.shape[-1]
    if (
        value_checks_enabled()
        and labels.numel()
        and any_true((labels < 0) | (labels > num_classes))
    ):
        bad = labels[(labels < 0) | (labels > num_classes)].flatten()[0]
        raise IndexError(
            f"labels must be class indices in [0, {num_classes}] ({num_classes} = background), "
            f"found {int(bad)}"
        )
    _check_unit_interval("scores", scores)
    return labels, scores


def quality_focal_loss(
    input: torch.Tensor,
    target: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    weight: torch.Tensor | None = None,
    avg_factor: float | torch.Tensor | None = None,
    *,
    beta: float = 2.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Quality Focal Loss (GFL): a focal BCE of the joint class-and-quality score.

    Each class logit :math:`x_c` of an anchor predicts the localisation quality (IoU) of the box
    for that class: the target :math:`y_c` is the IoU of the anchor's box for its positive class
    and 0 for every other class (and for background anchors). With :math:`\sigma = \sigma(x_c)`:

    .. math::
        \ell = \sum_c |y_c - \sigma|^\beta\,
               \bigl[-y_c \log \sigma - (1 - y_c) \log(1 - \sigma)\bigr]

    the focal loss generalised to continuous labels: :math:`|y - \sigma|^\beta` down-weights
    anchors whose score is already close to their quality.

    Args:
        input: class logits ``(..., C)``, usually ``(N, C)`` (anchors × classes); floating.
        target: either a pair ``(labels, scores)`` as mmdetection (``labels`` integer of shape
            ``(...)`` with values in ``[0, C]``, ``C`` meaning background; ``scores`` floating of
            shape ``(...)`` in ``[0, 1]``, the IoU of each positive anchor, ignored for
            background), or a floating tensor of ``input``'s shape with the quality target of
            every class in ``[0, 1]`` (mmdetection's ``quality_focal_loss_tensor_target``).
            Treated as constant (no gradient).
        weight: optional per-anchor weight broadcasting to ``input.shape[:-1]``.
        avg_factor: ``"mean"`` divides the sum by it instead of the number of anchors.
        beta: :math:`\beta \ge 0` (2 in the paper).
        reduction: ``"none"`` (one loss per anchor, ``input.shape[:-1]``: the sum over classes),
            ``"mean"`` over the anchors, or ``"sum"``.

    Returns:
        Scalar, or ``input.shape[:-1]`` for ``"none"``; the dtype of ``input``.

    Edge cases: no anchors: ``"mean"`` is 0 (mmdetection: NaN). Finite gradients at
    :math:`y = \sigma` for every ``beta`` (``beta < 1`` included). Labels outside ``[0, C]`` raise
    ``IndexError`` and scores outside ``[0, 1]`` ``ValueError`` (value checks); mmdetection also
    treats a negative label as background.

    Example:
        >>> logits = torch.randn(6, 3, requires_grad=True)
        >>> labels = torch.tensor([0, 2, 3, 3, 1, 3])  # 3 = background
        >>> ious = torch.tensor([0.9, 0.6, 0.0, 0.0, 0.75, 0.0])
        >>> losskit.quality_focal_loss(logits, (labels, ious), avg_factor=3.0).backward()

    Reference: X. Li et al., "Generalized Focal Loss: Learning Qualified and Distributed Bounding
    Boxes for Dense Object Detection", NeurIPS 2020. Same values as mmdetection's
    ``quality_focal_loss`` (and its tensor-target form) with ``use_sigmoid=True``.
    """
    input = check_floating("input", input)
    if input.dim() == 0:
        raise ValueError("input must have a class dimension (..., C), got a 0-D tensor")
    target = _check_qfl_target(input, target)
    reduction = check_reduction(reduction)
    beta = check_range("beta", beta, 0.0, finite=True)
    weight = _check_weight(weight, input.shape[:-1], input)
    avg_factor = check_avg_factor(avg_factor, reduction)
    return _QFL(input, target, weight, avg_factor, beta, reduction)


quality_focal_loss.backends = _QFL  # type: ignore[attr-defined]


# ---------------------------------------------------------------- distribution focal loss


def _dfl_formula(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    avg_factor: AvgFactor,
    reduction: str,
) -> torch.Tensor:
    x = upcast(input)
    t = target.detach().to(x.dtype)
    n = x.shape[-1] - 1  # bins 0..n
    # floor, kept <= n - 1 so that t = n puts all its mass on bin n (weight_left = 0) instead of
    # asking for bin n + 1.
    left = t.floor().clamp(max=n - 1)
    w_left = left + 1.0 - t
    w_right = t - left
    log_p = F.log_softmax(x, dim=-1)
    index = left.long().unsqueeze(-1)
    pair = log_p.gather(-1, torch.cat([index, index + 1], dim=-1))
    loss = -(w_left * pair[..., 0] + w_right * pair[..., 1])
    return _weight_reduce(loss, weight, reduction, avg_factor).to(input.dtype)


_DFL = Backends("distribution_focal_loss", formula=_dfl_formula)


def distribution_focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    avg_factor: float | torch.Tensor | None = None,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Distribution Focal Loss (GFL, DFL): learn a box edge as a distribution over integer bins.

    **What it is.** A GFL / YOLOv8-style head does not regress the distance :math:`t` from an
    anchor point to a box edge directly. It predicts ``n + 1`` logits per edge, a softmax
    distribution :math:`p` over the integer distances :math:`\{0, 1, \dots, n\}` (in stride
    units), and reads the edge off as its expectation :math:`\hat t = \sum_i i\,p_i`. Many
    distributions have the right expectation; DFL picks the sharpest one, the two bins around the
    continuous target, :math:`l = \lfloor t \rfloor` and :math:`r = l + 1`, weighted by how close
    :math:`t` is to each:

    .. math::
        \ell = -\bigl[(r - t) \log p_l + (t - l) \log p_r\bigr]

    a cross entropy with the "two-hot" target :math:`(r - t, t - l)` on :math:`(l, r)`, whose
    expectation is exactly :math:`t`. It is minimal when :math:`p` equals that two-hot
    distribution, and its minimum is the two-hot's entropy (0 only for an integer :math:`t`), not
    0; the loss pushes probability mass onto the two bins around the target and away from the
    others, which is what makes the distribution (and the box) sharp. The name comes from the
    focal loss: the mass is focused near the target.

    Args:
        input: logits ``(..., n + 1)`` over the bins, usually ``(N·4, n + 1)`` (one row per box
            edge); floating, ``n + 1 >= 2``.
        target: the continuous distances ``(...)`` (``input.shape[:-1]``), floating, in
            ``[0, n]``. Treated as constant (no gradient).
        weight: optional weight broadcasting to ``target``'s shape (e.g. each anchor's quality
            score, repeated over its 4 edges).
        avg_factor: ``"mean"`` divides the sum by it (mmdetection's GFL head passes 4.0, ×
            the number of positives in other heads).
        reduction: ``"none"`` (``target``'s shape), ``"mean"`` or ``"sum"``.

    Returns:
        Scalar, or ``target``'s shape for ``"none"``; the dtype of ``input``.

    Edge cases: an integer target has all its weight on one bin (the other weight is 0); the
    target ``t = n`` is allowed (its mass goes to bin ``n``): mmdetection and ultralytics
    index bin ``n + 1`` there and so clamp targets to ``n - 0.01`` beforehand; that clamping is
    not needed here and does not change the values below ``n``. A target outside ``[0, n]``
    raises ``ValueError`` (a value check). No edges: ``"mean"`` is 0.

    Example:
        >>> reg_max = 16  # bins 0..16
        >>> logits = torch.randn(8 * 4, reg_max + 1, requires_grad=True)
        >>> distances = torch.rand(8 * 4) * reg_max
        >>> losskit.distribution_focal_loss(logits, distances).backward()

    Reference: X. Li et al., "Generalized Focal Loss", NeurIPS 2020. Same values as
    mmdetection's ``distribution_focal_loss`` and ultralytics' ``DFLoss`` per edge (ultralytics
    then averages the 4 edges of a box and weighs them by the box's target score).
    """
    input = check_floating("input", input)
    if input.dim() == 0 or input.shape[-1] < 2:
        raise ValueError(
            f"input must have shape (..., n + 1) with at least 2 bins, got {tuple(input.shape)}"
        )
    target = check_floating("target", target)
    check_same_device("target", target, input)
    if tuple(target.shape) != tuple(input.shape[:-1]):
        raise ValueError(
            f"target must have shape {tuple(input.shape[:-1])} (input's shape without its bin "
            f"dimension), got {tuple(target.shape)}"
        )
    reduction = check_reduction(reduction)
    weight = _check_weight(weight, target.shape, input)
    avg_factor = check_avg_factor(avg_factor, reduction)
    check_values_in("target", target, 0.0, float(input.shape[-1] - 1))
    return _DFL(input, target, weight, avg_factor, reduction)


distribution_focal_loss.backends = _DFL  # type: ignore[attr-defined]


# ---------------------------------------------------------------- varifocal loss


def _vfl_formula(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    avg_factor: AvgFactor,
    alpha: float,
    gamma: float,
    iou_weighted: bool,
    reduction: str,
) -> torch.Tensor:
    x = upcast(input)
    q = target.detach().to(x.dtype)
    positive = q > 0
    # alpha sigma(x)^gamma from the log-sigmoid: finite, with a finite gradient, for gamma < 1.
    negative_weight = alpha * torch.exp(gamma * F.logsigmoid(x))
    focal_weight = torch.where(positive, q if iou_weighted else torch.ones_like(q), negative_weight)
    loss = F.binary_cross_entropy_with_logits(x, q, reduction="none") * focal_weight
    return _weight_reduce(loss, weight, reduction, avg_factor).to(input.dtype)


_VFL = Backends("varifocal_loss", formula=_vfl_formula)


def varifocal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    avg_factor: float | torch.Tensor | None = None,
    *,
    alpha: float = 0.75,
    gamma: float = 2.0,
    iou_weighted: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Varifocal loss (VarifocalNet): an asymmetric focal BCE of IoU-aware classification scores.

    The target :math:`q` of a class logit is the IoU of the predicted box with its ground truth
    for the positive class, and 0 otherwise. With :math:`p = \sigma(x)`:

    .. math::
        \ell = \begin{cases}
            q\,\bigl[-q \log p - (1 - q) \log(1 - p)\bigr] & q > 0 \\
            -\alpha\,p^\gamma \log(1 - p) & q = 0
        \end{cases}

    Only negatives are down-weighted (by :math:`\alpha p^\gamma`, as in the focal loss); positives
    are weighted by their IoU, so that high-quality positives dominate training.

    Args:
        input: logits, any shape, usually ``(N, C)``; floating.
        target: IoU-aware targets of ``input``'s shape in ``[0, 1]``, floating. Treated as
            constant (no gradient).
        weight: optional weight broadcasting to ``input``'s shape.
        avg_factor: ``"mean"`` divides the sum by it instead of the element count.
        alpha: :math:`\alpha \ge 0`, the weight of the negatives (0.75 in the paper; not the
            focal loss's positive-class weight).
        gamma: :math:`\gamma \ge 0` (2 in the paper).
        iou_weighted: ``True`` (default) weighs positives by :math:`q`; ``False`` by 1.
        reduction: ``"none"`` (``input``'s shape), ``"mean"`` over the elements, or ``"sum"``.

    Returns:
        Scalar, or ``input``'s shape for ``"none"``; the dtype of ``input``.

    Edge cases: the focal weight is differentiated as written (not detached), as mmdetection
    and ultralytics do. :math:`p^\gamma` is taken as :math:`\exp(\gamma \log \sigma(x))`: finite
    value and gradient for every ``gamma >= 0`` and finite logit. Empty input: ``"mean"`` is 0.
    A target outside ``[0, 1]`` raises ``ValueError`` (mmdetection treats a negative target as
    a negative).

    Example:
        >>> logits = torch.randn(4, 3, requires_grad=True)
        >>> target = torch.zeros(4, 3)
        >>> target[0, 1], target[2, 0] = 0.83, 0.61  # IoUs of the two positive anchors
        >>> losskit.varifocal_loss(logits, target).backward()

    Reference: H. Zhang et al., "VarifocalNet: An IoU-aware Dense Object Detector", CVPR 2021.
    Same values as mmdetection's ``varifocal_loss`` (``use_sigmoid=True``) and ultralytics'
    ``VarifocalLoss`` (which takes labels and scores separately and sums over anchors).
    """
    input = check_floating("input", input)
    target = check_floating("target", target)
    check_same_shape("input", input, "target", target)
    reduction = check_reduction(reduction)
    alpha = check_range("alpha", alpha, 0.0, finite=True)
    gamma = check_range("gamma", gamma, 0.0, finite=True)
    iou_weighted = check_bool("iou_weighted", iou_weighted)
    weight = _check_weight(weight, input.shape, input)
    avg_factor = check_avg_factor(avg_factor, reduction)
    _check_unit_interval("target", target)
    return _VFL(input, target, weight, avg_factor, alpha, gamma, iou_weighted, reduction)


varifocal_loss.backends = _VFL  # type: ignore[attr-defined]


# ---------------------------------------------------------------- balanced L1 loss


def _balanced_l1_formula(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    avg_factor: AvgFactor,
    alpha: float,
    gamma: float,
    beta: float,
    reduction: str,
) -> torch.Tensor:
    x, t = upcast(input), upcast(target)
    diff = (x - t).abs()
    b = math.expm1(gamma / alpha)
    inner = alpha / b * (b * diff + 1.0) * torch.log1p(b * diff / beta) - alpha * diff
    outer = gamma * diff + (gamma / b - alpha * beta)
    loss = torch.where(diff < beta, inner, outer)
    return _weight_reduce(loss, weight, reduction, avg_factor).to(input.dtype)


_BALANCED_L1 = Backends("balanced_l1_loss", formula=_balanced_l1_formula)


def balanced_l1_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    avg_factor: float | torch.Tensor | None = None,
    *,
    alpha: float = 0.5,
    gamma: float = 1.5,
    beta: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Balanced L1 loss (Libra R-CNN): a box-regression loss that promotes the inliers' gradient.

    With :math:`d = |x - t|` and :math:`b = e^{\gamma / \alpha} - 1` (so that the two pieces meet
    at :math:`d = \beta`):

    .. math::
        \ell = \begin{cases}
            \frac{\alpha}{b}(b d + 1) \ln\bigl(\frac{b d}{\beta} + 1\bigr) - \alpha d & d < \beta \\
            \gamma d + \frac{\gamma}{b} - \alpha \beta & d \ge \beta
        \end{cases}

    Its gradient :math:`\alpha \ln(b d / \beta + 1)` near 0 is larger than smooth L1's for
    accurate (inlier) boxes, and capped at :math:`\gamma` for the outliers.

    Args:
        input: predicted box deltas, any shape (usually ``(N, 4)``); floating.
        target: regression targets, the same shape and dtype.
        weight: optional weight broadcasting to ``input``'s shape.
        avg_factor: ``"mean"`` divides the sum by it instead of the element count.
        alpha: :math:`\alpha > 0` (0.5), the inlier gradient's scale.
        gamma: :math:`\gamma > 0` (1.5), the outliers' gradient (the bound).
        beta: :math:`\beta > 0` (1.0), where the pieces meet.
        reduction: ``"none"`` (``input``'s shape), ``"mean"`` or ``"sum"``.

    Returns:
        Scalar, or ``input``'s shape for ``"none"``; the dtype of ``input``.

    Edge cases: the value is continuous for every ``beta``; the gradient is continuous at
    :math:`d = \beta` only for ``beta = 1`` (the paper's form), as in mmdetection, whose
    formula this is. At :math:`d = 0` the gradient is 0 (the subgradient of :math:`|x - t|`).
    Both ``input`` and ``target`` are differentiable. Empty input: ``"mean"`` is 0 (mmdetection
    asserts a non-empty target).

    Example:
        >>> deltas = torch.randn(8, 4, requires_grad=True)
        >>> targets = torch.randn(8, 4)
        >>> losskit.balanced_l1_loss(deltas, targets).backward()

    Reference: J. Pang et al., "Libra R-CNN: Towards Balanced Learning for Object Detection",
    CVPR 2019. Same values as mmdetection's ``balanced_l1_loss`` (same argument names).
    """
    input = check_floating("input", input)
    target = check_floating("target", target)
    check_same_shape("input", input, "target", target)
    if input.dtype != target.dtype:
        raise TypeError(
            f"input and target must have the same dtype, got {input.dtype} and {target.dtype}"
        )
    reduction = check_reduction(reduction)
    alpha = check_range("alpha", alpha, 0.0, low_inclusive=False, finite=True)
    gamma = check_range("gamma", gamma, 0.0, low_inclusive=False, finite=True)
    beta = check_range("beta", beta, 0.0, low_inclusive=False, finite=True)
    weight = _check_weight(weight, input.shape, input)
    avg_factor = check_avg_factor(avg_factor, reduction)
    return _BALANCED_L1(input, target, weight, avg_factor, alpha, gamma, beta, reduction)


balanced_l1_loss.backends = _BALANCED_L1  # type: ignore[attr-defined]
