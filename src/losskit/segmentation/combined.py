"""Dice + cross entropy and Dice + focal: one contract for both parts.

The pixel-wise part is losskit's own public loss (:func:`losskit.cross_entropy`,
:func:`losskit.binary_cross_entropy_with_logits`, :func:`losskit.softmax_focal_loss`,
:func:`losskit.sigmoid_focal_loss`), called on the float32 logits with ``reduction="sum"``; the
arguments it shares with the Dice part mean the same thing in both:

* ``activation``: ``"softmax"`` gives cross entropy / softmax focal over the C channels,
  ``"sigmoid"`` gives per-channel BCE / sigmoid focal against the per-class targets;
* ``ignore_index``: the ignored pixels leave both parts;
* ``include_background=False`` drops channel 0 from the Dice part. The pixel-wise part has its
  own switch, ``ce_include_background`` / ``focal_include_background`` (default ``True``: every
  class scored, as nnU-Net and MONAI do), because dropping the background there leaves background
  pixels without any pixel-wise supervision: a small model on synthetic shapes then stalls at a
  Dice of 0.19 on one class (tests/test_segmentation.py). Set it ``False`` and channel 0 leaves
  that part too: under softmax the softmax still runs over all C channels and the pixel-wise sum
  :math:`-\\sum_{c \\ge 1} w_c t_{ic} \\log p_{ic}` skips class 0;
* ``weight`` (C entries, always): Dice's class weight and the pixel-wise class weight.

The pixel-wise ``mean`` is the weighted mean over the scored target mass,
:math:`\\sum_i \\sum_{c \\in K} w_c t_{ic} e_{ic} / \\sum_i \\sum_{c \\in K} w_c t_{ic}` under
softmax (cross entropy's own ``mean`` for index targets: :math:`\\sum w_{y_i} \\ell_i / \\sum
w_{y_i}`) and :math:`\\sum_{i, c \\in K} w_c e_{ic} / \\sum_{i, c \\in K} w_c` under sigmoid; it is 0
(not NaN) when nothing is scored (every pixel ignored or background).
"""

from __future__ import annotations

import torch

from .. import classification as _classification
from .. import focal as _focal
from .._checks import check_bool, check_range
from .._dispatch import Backends
from .._precision import upcast
from ._contract import Seg, check_seg, check_smooth_eps, target_probs
from .dice import dice_value

__all__ = ["dice_ce_loss", "dice_focal_loss"]


def _pixel_seg(seg: Seg, include_background: bool) -> Seg:
    """The contract of the pixel-wise part: the Dice's, with its own ``include_background``."""
    return Seg(
        seg.activation, seg.ignore_index, include_background, seg.index_target, seg.num_classes
    )


_SENTINEL = -100


def check_lambda(name: str, value: object) -> float:
    return check_range(name, value, 0.0, finite=True)


def _check(input, target, activation, ignore_index, include_background, weight, reduction):
    if activation not in ("softmax", "sigmoid"):
        raise ValueError(
            "activation must be 'softmax' or 'sigmoid' here (the cross-entropy/focal part needs "
            f"logits), got {activation!r}"
        )
    return check_seg(
        input,
        target,
        activation=activation,
        ignore_index=ignore_index,
        include_background=include_background,
        weight=weight,
        reduction=reduction,
        reductions=("mean", "sum"),
    )


def _finish(total: torch.Tensor, mass: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return total
    return torch.where(mass > 0, total / mass.clamp_min(1e-30), 0.0)


def _softmax_part(x, target, weight, seg: Seg, reduction, focal_gamma=None):
    """Cross entropy (or softmax focal with ``focal_gamma``) over the scored target mass."""
    w = upcast(weight)
    if seg.index_target:
        ii = _SENTINEL if seg.ignore_index is None else seg.ignore_index
        y = target if seg.include_background else torch.where(target == 0, ii, target)
        if focal_gamma is None:
            total = _classification.cross_entropy(x, y, w, ii, "sum")
        else:
            total = _focal.softmax_focal_loss(x, y, w, focal_gamma, ii, "sum")
        scored = y != ii
        if w is None:
            mass = scored.sum().to(x.dtype)
        else:
            mass = (w[torch.where(scored, y, 0)] * scored).sum()
        return _finish(total, mass, reduction)
    t = target.detach().to(x.dtype)
    if not seg.include_background:
        t = torch.cat([torch.zeros_like(t[:, :1]), t[:, 1:]], dim=1)
    total = _classification.cross_entropy(x, t, w, _SENTINEL, "sum")
    shape = [1, -1] + [1] * (x.dim() - 2)
    mass = t.sum() if w is None else (t * w.view(shape)).sum()
    return _finish(total, mass, reduction)


def _sigmoid_part(x, target, weight, seg: Seg, reduction, focal_gamma=None, focal_alpha=None):
    """Per-channel BCE (or sigmoid focal) over the kept elements of the kept channels."""
    t, keep = target_probs(target, seg, x.dtype)
    if not seg.include_background:
        x, t = x[:, 1:], t[:, 1:]
    el_weight = None
    if weight is not None:
        w = upcast(weight)
        w = w if seg.include_background else w[1:]
        el_weight = w.view([1, -1] + [1] * (x.dim() - 2))
    if keep is not None:
        k = keep.to(x.dtype)
        el_weight = k if el_weight is None else el_weight * k
    if focal_gamma is None:
        total = _classification.binary_cross_entropy_with_logits(x, t, el_weight, "sum")
    else:
        alpha = -1.0 if focal_alpha is None else focal_alpha
        per_element = _focal.sigmoid_focal_loss(x, t, alpha, focal_gamma, "none")
        if el_weight is not None:
            # where(), not only the product: an ignored element's gradient is exactly 0.
            per_element = torch.where(el_weight > 0, per_element, 0.0) * el_weight
        total = per_element.sum()
    mass = x.new_tensor(float(x.numel())) if el_weight is None else el_weight.expand_as(x).sum()
    return _finish(total, mass, reduction)


# ---------------------------------------------------------------- dice + cross entropy


def _dice_ce_formula(
    input,
    target,
    weight,
    seg,
    reduction,
    batch_dice,
    squared_pred,
    smooth,
    eps,
    l_dice,
    l_ce,
    ce_include_background,
):
    dice = dice_value(input, target, weight, seg, reduction, batch_dice, smooth, eps, squared_pred)
    x = upcast(input)
    part = _softmax_part if seg.activation == "softmax" else _sigmoid_part
    ce = part(x, target, weight, _pixel_seg(seg, ce_include_background), reduction)
    return (l_dice * dice + l_ce * ce).to(input.dtype)


_DICE_CE = Backends("dice_ce_loss", formula=_dice_ce_formula)


def dice_ce_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    activation: str = "softmax",
    ignore_index: int | None = None,
    include_background: bool = True,
    weight: torch.Tensor | None = None,
    batch_dice: bool = False,
    squared_pred: bool = False,
    smooth: float = 1e-5,
    eps: float = 1e-7,
    lambda_dice: float = 1.0,
    lambda_ce: float = 1.0,
    ce_include_background: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Dice loss plus cross entropy, both under the same contract.

    .. math::
        \ell = \lambda_{dice}\,\mathrm{Dice}(p, t) + \lambda_{ce}\,\mathrm{CE}(x, t)

    with Dice exactly :func:`dice_loss` (same arguments) and CE the pixel-wise part described in
    :mod:`losskit.segmentation.combined`: :func:`losskit.cross_entropy` for ``"softmax"``,
    :func:`losskit.binary_cross_entropy_with_logits` per channel for ``"sigmoid"``.

    Args:
        input: logits ``(N, C, d1, ..., dK)``; ``activation`` must be ``"softmax"`` or
            ``"sigmoid"`` (the CE part needs logits).
        target, ignore_index, include_background, weight, batch_dice, squared_pred, smooth, eps:
            as :func:`dice_loss`, for both parts.
        lambda_dice, lambda_ce: non-negative weights of the two parts.
        ce_include_background: ``False`` drops class 0 from the CE part too (see
            :mod:`losskit.segmentation.combined`); the default scores every class.
        reduction: ``"mean"`` or ``"sum"``, applied to each part (no ``"none"``: the parts have
            different shapes).

    Returns:
        A scalar of ``input``'s dtype.

    Edge cases: every pixel ignored gives 0 for both parts (Dice: :math:`1 - s/\max(s, \epsilon)`).

    Conventions: MONAI ``DiceCELoss(softmax=True, to_onehot_y=True, include_background=b,
    smooth_nr=s, smooth_dr=s)`` is ``dice_ce_loss(..., include_background=b, smooth=s, eps=0)``
    (MONAI's CE always scores every class, our default ``ce_include_background=True``; MONAI #6855
    asks for the switch we have). Differences: MONAI's Dice takes ``weight[1:]`` without the
    background while its CE takes ``weight`` (MONAI #7729; ours takes C entries for both); its
    Dice weighted mean divides by the number of classes (ours by the weights' sum); with
    ``sigmoid=True`` it uses BCE (with ``weight`` as ``pos_weight``) only for a one-channel input
    and softmax cross entropy otherwise, while ours is per-channel BCE under sigmoid. smp has no
    combined loss.

    Example:
        >>> logits = torch.randn(2, 3, 16, 16, requires_grad=True)
        >>> target = torch.randint(3, (2, 16, 16))
        >>> losskit.segmentation.dice_ce_loss(logits, target, lambda_ce=0.5).backward()

    Reference: F. Isensee et al., "nnU-Net", Nature Methods 2021 (Dice + CE as the default loss).
    """
    input, target, weight, seg, reduction = _check(
        input, target, activation, ignore_index, include_background, weight, reduction
    )
    batch_dice = check_bool("batch_dice", batch_dice)
    squared_pred = check_bool("squared_pred", squared_pred)
    smooth, eps = check_smooth_eps(smooth, eps)
    l_dice, l_ce = check_lambda("lambda_dice", lambda_dice), check_lambda("lambda_ce", lambda_ce)
    ce_include_background = check_bool("ce_include_background", ce_include_background)
    return _DICE_CE(
        input,
        target,
        weight,
        seg,
        reduction,
        batch_dice,
        squared_pred,
        smooth,
        eps,
        l_dice,
        l_ce,
        ce_include_background,
    )


dice_ce_loss.backends = _DICE_CE  # type: ignore[attr-defined]

# ---------------------------------------------------------------- dice + focal


def _dice_focal_formula(
    input,
    target,
    weight,
    seg,
    reduction,
    batch_dice,
    squared_pred,
    smooth,
    eps,
    gamma,
    alpha,
    l_dice,
    l_focal,
    focal_include_background,
):
    dice = dice_value(input, target, weight, seg, reduction, batch_dice, smooth, eps, squared_pred)
    x = upcast(input)
    pixel_seg = _pixel_seg(seg, focal_include_background)
    if seg.activation == "softmax":
        focal = _softmax_part(x, target, weight, pixel_seg, reduction, focal_gamma=gamma)
    else:
        focal = _sigmoid_part(x, target, weight, pixel_seg, reduction, gamma, alpha)
    return (l_dice * dice + l_focal * focal).to(input.dtype)


_DICE_FOCAL = Backends("dice_focal_loss", formula=_dice_focal_formula)


def dice_focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | None = None,
    activation: str = "softmax",
    ignore_index: int | None = None,
    include_background: bool = True,
    weight: torch.Tensor | None = None,
    batch_dice: bool = False,
    squared_pred: bool = False,
    smooth: float = 1e-5,
    eps: float = 1e-7,
    lambda_dice: float = 1.0,
    lambda_focal: float = 1.0,
    focal_include_background: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Dice loss plus focal loss (Lin et al.), both under the same contract.

    .. math::
        \ell = \lambda_{dice}\,\mathrm{Dice}(p, t) + \lambda_{focal}\,\mathrm{Focal}(x, t)

    Focal is :func:`losskit.softmax_focal_loss` (per pixel :math:`-w_y (1 - p_y)^\gamma \log p_y`,
    ``weight`` as its ``alpha``) for ``"softmax"``, which takes class-index targets only, and
    :func:`losskit.sigmoid_focal_loss` per channel (balance ``alpha``; ``None`` disables it) times
    ``weight`` for ``"sigmoid"``. Its ``mean`` follows :mod:`losskit.segmentation.combined`.

    Args:
        gamma: focusing parameter :math:`\gamma \ge 0`.
        alpha: the sigmoid form's positive-class balance in ``[0, 1]``, or ``None``; must be
            ``None`` under softmax (class weights go in ``weight``).
        lambda_dice, lambda_focal: non-negative weights of the two parts.
        focal_include_background: ``False`` drops class 0 from the focal part too.
        others: as :func:`dice_ce_loss`.

    Returns:
        A scalar of ``input``'s dtype.

    Conventions: MONAI ``DiceFocalLoss(sigmoid=True, gamma=g, alpha=a, include_background=b,
    smooth_nr=s, smooth_dr=s)`` with one-hot targets is ``dice_focal_loss(...,
    activation="sigmoid", gamma=g, alpha=a, include_background=b, focal_include_background=b,
    smooth=s, eps=0)`` (MONAI drops channel 0 from both parts). With ``softmax=True`` MONAI still applies a *sigmoid* focal loss to
    the one-hot channels; ours uses the softmax focal loss there. MONAI's ``weight`` scales the
    focal loss per channel and the Dice per class (mean over C); ours is one weighted mean.

    Example:
        >>> logits = torch.randn(2, 3, 16, 16, requires_grad=True)
        >>> target = torch.randint(3, (2, 16, 16))
        >>> losskit.segmentation.dice_focal_loss(logits, target, gamma=2.0).backward()

    Reference: T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017; W. Zhu et
    al., "AnatomyNet", Medical Physics 2019 (Dice + focal).
    """
    input, target, weight, seg, reduction = _check(
        input, target, activation, ignore_index, include_background, weight, reduction
    )
    gamma = _focal.check_gamma(gamma)
    if alpha is not None:
        if seg.activation == "softmax":
            raise ValueError(
                "alpha is the sigmoid focal loss's balance; under activation='softmax' give "
                f"per-class weights in weight=, got alpha={alpha!r}"
            )
        alpha = check_range("alpha", alpha, 0.0, 1.0)
    if seg.activation == "softmax" and not seg.index_target:
        raise ValueError(
            "dice_focal_loss with activation='softmax' takes class-index targets (N, d1, ..., dK) "
            f"(softmax_focal_loss has no probability form), got target of shape "
            f"{tuple(target.shape)} and dtype {target.dtype}"
        )
    batch_dice = check_bool("batch_dice", batch_dice)
    squared_pred = check_bool("squared_pred", squared_pred)
    smooth, eps = check_smooth_eps(smooth, eps)
    l_dice = check_lambda("lambda_dice", lambda_dice)
    l_focal = check_lambda("lambda_focal", lambda_focal)
    focal_include_background = check_bool("focal_include_background", focal_include_background)
    return _DICE_FOCAL(
        input,
        target,
        weight,
        seg,
        reduction,
        batch_dice,
        squared_pred,
        smooth,
        eps,
        gamma,
        alpha,
        l_dice,
        l_focal,
        focal_include_background,
    )


dice_focal_loss.backends = _DICE_FOCAL  # type: ignore[attr-defined]
