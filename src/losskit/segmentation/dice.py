"""Soft Dice, soft Jaccard (IoU) and generalised Dice losses under the shared contract."""

from __future__ import annotations

import torch

from .._checks import check_bool
from .._dispatch import Backends
from .._precision import upcast
from ._contract import (
    Seg,
    activate,
    check_seg,
    check_smooth_eps,
    class_probs,
    kept_weight,
    reduce_classes,
)
from ._contract import sum_dims as _dims
from ._overlap import index_overlap_sums

__all__ = ["dice_loss", "generalized_dice_loss", "jaccard_loss"]


def _check_common(
    input, target, activation, ignore_index, include_background, weight, batch_dice, reduction
):
    input, target, weight, seg, reduction = check_seg(
        input,
        target,
        activation=activation,
        ignore_index=ignore_index,
        include_background=include_background,
        weight=weight,
        reduction=reduction,
        index_range_in_formula=True,  # overlap_sums checks it from its class counts
    )
    batch_dice = check_bool("batch_dice", batch_dice)
    return input, target, weight, seg, reduction, batch_dice


def overlap_sums(
    input: torch.Tensor,
    target: torch.Tensor,
    seg: Seg,
    batch_dice: bool,
    squared_pred: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``I = Σ p t``, ``P = Σ p`` (``Σ p²``), ``T = Σ t`` (``Σ t²``) per (image, class) or class."""
    if seg.index_target and seg.num_classes > 1:
        return _index_sums(input, target, seg, batch_dice, squared_pred)
    p, t, _ = class_probs(input, target, seg)
    dims = _dims(batch_dice)
    inter = (p * t).sum(dims)
    if squared_pred:
        return inter, (p * p).sum(dims), (t * t).sum(dims)
    return inter, p.sum(dims), t.sum(dims)


def _index_sums(input, target, seg, batch_dice, squared_pred):
    """The sums for class-index targets (:mod:`._overlap`: never a float one-hot); an ignored
    pixel is in none of them."""
    x = upcast(input)
    n, c = x.shape[0], x.shape[1]
    p = activate(x, seg.activation).reshape(n, c, -1)
    inter, p_sum, t_sum = index_overlap_sums(p, target, seg, squared_pred)
    if not seg.include_background:
        inter, p_sum, t_sum = inter[:, 1:], p_sum[:, 1:], t_sum[:, 1:]
    if batch_dice:
        return inter.sum(0), p_sum.sum(0), t_sum.sum(0)
    return inter, p_sum, t_sum


def _ratio(num: torch.Tensor, den: torch.Tensor, eps: float) -> torch.Tensor:
    return num / den.clamp_min(eps) if eps > 0 else num / den


# ---------------------------------------------------------------- dice


def dice_value(input, target, weight, seg, reduction, batch_dice, smooth, eps, squared_pred):
    """The reduced Dice loss in the compute dtype (float32 for half inputs)."""
    inter, p_sum, t_sum = overlap_sums(input, target, seg, batch_dice, squared_pred)
    loss = 1.0 - _ratio(2.0 * inter + smooth, p_sum + t_sum + smooth, eps)
    return reduce_classes(loss, kept_weight(weight, seg, loss.dtype), reduction)


def _dice_formula(input, target, weight, seg, reduction, batch_dice, smooth, eps, squared_pred):
    value = dice_value(input, target, weight, seg, reduction, batch_dice, smooth, eps, squared_pred)
    return value.to(input.dtype)


_DICE = Backends("dice_loss", formula=_dice_formula)


def dice_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    activation: str | None = "softmax",
    ignore_index: int | None = None,
    include_background: bool = True,
    weight: torch.Tensor | None = None,
    batch_dice: bool = False,
    squared_pred: bool = False,
    smooth: float = 1e-5,
    eps: float = 1e-7,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Soft Dice loss (Milletari et al.), one score per (image, class), averaged over classes.

    With :math:`p` the activated input and :math:`t` the target probabilities (one-hot for index
    targets), summing over the kept pixels :math:`i` of one image (all images with ``batch_dice``):

    .. math::
        \ell_{n,c} = 1 - \frac{2 \sum_i p_{ic} t_{ic} + s}
                              {\max\big(\sum_i p_{ic}^{q} + \sum_i t_{ic}^{q} + s,\ \epsilon\big)}

    with :math:`q = 2` for ``squared_pred`` (else 1), :math:`s` = ``smooth`` and
    :math:`\epsilon` = ``eps``. ``mean`` is :math:`\sum_{n,c} w_c \ell_{n,c} / (N \sum_c w_c)`
    (the mean over classes of the per-class losses, then over images).

    Args:
        input: logits ``(N, C, d1, ..., dK)`` (probabilities with ``activation=None``).
        target: class indices ``(N, d1, ..., dK)`` or probabilities/one-hot of ``input``'s shape.
        activation: ``"softmax"`` (over C), ``"sigmoid"`` (per channel) or ``None``; applied to
            the full input before any pixel or channel is dropped.
        ignore_index: index-target value whose pixels are removed from every sum (value and
            gradient exactly unaffected by their logits); ``None`` ignores nothing.
        include_background: ``False`` drops channel 0 (after the activation).
        weight: per-class weight ``(C,)`` (one entry per *input* channel, always).
        batch_dice: sum over the batch before the ratio (one score per class).
        squared_pred: squares ``p`` and ``t`` in the denominator (V-Net's form).
        smooth: :math:`s`, added to numerator and denominator.
        eps: :math:`\epsilon`, the denominator's floor (``0`` for none).
        reduction: ``"none"`` (``(N, C')`` or ``(C',)`` with ``batch_dice``: ``w_c ℓ``),
            ``"mean"`` or ``"sum"``.

    Returns:
        A scalar, or the per-class losses for ``"none"``; the dtype of ``input``.

    Edge cases: a class absent from the target scores :math:`s / (P + s)`, so probability
    mass on it is penalised; a class (or image) whose pixels are all ignored gives
    :math:`1 - s / \max(s, \epsilon) = 0` for :math:`s > 0` (and ``1`` for ``smooth=0``).
    An empty batch gives NaN for ``mean``. Half inputs are summed in float32 (no overflow at
    512×512, unlike smp's fp16 sums, smp #463).

    Conventions against the peers (every difference; ``p`` after the activation):

    ==================  ===========================================  ==========================================
    losskit             MONAI 1.x ``DiceLoss``                       smp ``DiceLoss``
    ==================  ===========================================  ==========================================
    activation          ``softmax=True`` / ``sigmoid=True``          ``from_logits`` + ``mode``
    index target        ``to_onehot_y=True``, target ``(N, 1, ...)`` ``mode="multiclass"``
    ``smooth``          ``smooth_nr = smooth_dr = smooth``           0.6: ``smooth = smooth / 2``; 0.5: same
    ``eps``             none (use ``eps=0``)                         0.6: ``eps = eps / 2``; 0.5: same
    ``ignore_index``    ``ignore_index`` (with ``to_onehot_y``)      ``ignore_index``
    ``batch_dice``      ``batch``                                    always True (sums over the batch)
    ``weight``          ``weight`` (C' entries; mean divides by C')  ``class_weights`` (same weighted mean)
    empty target class  scored (smooth)/(P + smooth)                 loss forced to 0 (still averaged)
    soft targets        ``soft_label=False`` form                    ``|p - t|`` form (equal for hard t)
    ==================  ===========================================  ==========================================

    MONAI maps ``DiceLoss(softmax=True, to_onehot_y=True, smooth_nr=s, smooth_dr=s)`` to
    ``dice_loss(..., smooth=s, eps=0)``; smp 0.6 ``DiceLoss("multiclass", smooth=s, eps=e)`` to
    ``dice_loss(..., batch_dice=True, smooth=2 s, eps=2 e)`` when every class is present.

    Example:
        >>> logits = torch.randn(2, 3, 16, 16, requires_grad=True)
        >>> target = torch.randint(3, (2, 16, 16))
        >>> losskit.segmentation.dice_loss(logits, target, include_background=False).backward()

    References: F. Milletari et al., "V-Net", 3DV 2016; C. Sudre et al. (2017) for the form.
    """
    input, target, weight, seg, reduction, batch_dice = _check_common(
        input, target, activation, ignore_index, include_background, weight, batch_dice, reduction
    )
    squared_pred = check_bool("squared_pred", squared_pred)
    smooth, eps = check_smooth_eps(smooth, eps)
    return _DICE(input, target, weight, seg, reduction, batch_dice, smooth, eps, squared_pred)


dice_loss.backends = _DICE  # type: ignore[attr-defined]

# ---------------------------------------------------------------- jaccard


def _jaccard_formula(input, target, weight, seg, reduction, batch_dice, smooth, eps):
    inter, p_sum, t_sum = overlap_sums(input, target, seg, batch_dice)
    loss = 1.0 - _ratio(inter + smooth, p_sum + t_sum - inter + smooth, eps)
    return reduce_classes(loss, kept_weight(weight, seg, loss.dtype), reduction).to(input.dtype)


_JACCARD = Backends("jaccard_loss", formula=_jaccard_formula)


def jaccard_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    activation: str | None = "softmax",
    ignore_index: int | None = None,
    include_background: bool = True,
    weight: torch.Tensor | None = None,
    batch_dice: bool = False,
    smooth: float = 1e-5,
    eps: float = 1e-7,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Soft Jaccard (IoU) loss, one score per (image, class), averaged over classes.

    With :math:`I = \sum_i p_{ic} t_{ic}`, :math:`P = \sum_i p_{ic}`, :math:`T = \sum_i t_{ic}`
    over the kept pixels of one image (all images with ``batch_dice``):

    .. math::
        \ell_{n,c} = 1 - \frac{I + s}{\max(P + T - I + s,\ \epsilon)}

    Arguments, shapes, reductions and edge cases as :func:`dice_loss` (no ``squared_pred``).

    Conventions: smp ``JaccardLoss("multiclass", smooth=s, eps=e)`` is
    ``jaccard_loss(..., batch_dice=True, smooth=s, eps=e)`` when every class is present (smp
    zeroes the loss of a class absent from the target); MONAI ``DiceLoss(jaccard=True,
    smooth_nr=s, smooth_dr=s)`` computes :math:`(2I + s)/(2(P + T - I) + s)`, i.e. ours with
    ``smooth=s/2, eps=0``.

    Example:
        >>> logits = torch.randn(2, 3, 16, 16, requires_grad=True)
        >>> losskit.segmentation.jaccard_loss(logits, torch.randint(3, (2, 16, 16))).backward()

    Reference: M. Rahman and Y. Wang, "Optimizing Intersection-Over-Union in Deep Neural Networks
    for Image Segmentation", ISVC 2016.
    """
    input, target, weight, seg, reduction, batch_dice = _check_common(
        input, target, activation, ignore_index, include_background, weight, batch_dice, reduction
    )
    smooth, eps = check_smooth_eps(smooth, eps)
    return _JACCARD(input, target, weight, seg, reduction, batch_dice, smooth, eps)


jaccard_loss.backends = _JACCARD  # type: ignore[attr-defined]

# ---------------------------------------------------------------- generalised dice


def _generalized_formula(input, target, weight, seg, reduction, batch_dice, smooth, eps):
    inter, p_sum, t_sum = overlap_sums(input, target, seg, batch_dice)
    # w_c = 1 / T_c²; an empty class (T_c = 0, w = inf) takes the largest finite weight of its
    # row (image, or the batch), so false positives on it still count; all empty: all 0.
    empty = t_sum == 0
    w = torch.where(empty, t_sum.new_zeros(()), 1.0 / torch.where(empty, 1.0, t_sum) ** 2)
    w = torch.where(empty, w.amax(-1, keepdim=True), w)
    user = kept_weight(weight, seg, w.dtype)
    if user is not None:
        w = w * user
    num = 2.0 * (w * inter).sum(-1) + smooth
    den = (w * (p_sum + t_sum)).sum(-1) + smooth
    loss = 1.0 - _ratio(num, den, eps)
    if reduction == "none":
        return loss.to(input.dtype)
    return (loss.sum() if reduction == "sum" else loss.mean()).to(input.dtype)


_GENERALIZED = Backends("generalized_dice_loss", formula=_generalized_formula)


def generalized_dice_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    activation: str | None = "softmax",
    ignore_index: int | None = None,
    include_background: bool = True,
    weight: torch.Tensor | None = None,
    batch_dice: bool = False,
    smooth: float = 1e-5,
    eps: float = 1e-7,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Generalised Dice loss (Sudre et al.): one Dice over all classes, each weighted by
    :math:`1/(\sum_i t_{ic})^2`.

    Per image (over the batch with ``batch_dice``), with :math:`I_c, P_c, T_c` the sums of
    :math:`p t`, :math:`p`, :math:`t` over the kept pixels and :math:`u_c` the optional ``weight``:

    .. math::
        w_c = \frac{u_c}{T_c^2}, \qquad
        \ell_n = 1 - \frac{2 \sum_c w_c I_c + s}{\max\big(\sum_c w_c (P_c + T_c) + s,\ \epsilon\big)}

    **Empty-class rule**: a class with :math:`T_c = 0` has no finite :math:`1/T_c^2`; it takes the
    largest :math:`1/T_{c'}^2` of the classes present in the same image (batch), so probability
    mass on an absent class is penalised like that on the rarest present class (MONAI's rule;
    clamping :math:`T_c` instead lets an absent class dominate, MONAI #369). If no class is
    present every weight is 0 and :math:`\ell_n = 1 - s / \max(s, \epsilon)` (0 for ``s > 0``).
    The weights depend on the target only (no gradient flows through them).

    Args:
        input, target, activation, ignore_index, include_background, weight, batch_dice, smooth, eps: as :func:`dice_loss`.
        reduction: ``"none"`` (``(N,)``, or ``()`` with ``batch_dice``), ``"mean"`` over images
            or ``"sum"``.

    Returns:
        A scalar, or ``(N,)`` for ``"none"``; the dtype of ``input``.

    Conventions: MONAI ``GeneralizedDiceLoss(softmax=True, to_onehot_y=True, w_type="square",
    smooth_nr=s, smooth_dr=s, batch=b)`` is ``generalized_dice_loss(..., smooth=s, eps=0,
    batch_dice=b)`` (MONAI's ``"none"`` keeps singleton dims). smp has no generalised Dice.

    Example:
        >>> logits = torch.randn(2, 4, 16, 16, requires_grad=True)
        >>> target = torch.randint(4, (2, 16, 16))
        >>> losskit.segmentation.generalized_dice_loss(logits, target).backward()

    Reference: C. H. Sudre et al., "Generalised Dice overlap as a deep learning loss function for
    highly unbalanced segmentations", DLMIA 2017.
    """
    input, target, weight, seg, reduction, batch_dice = _check_common(
        input, target, activation, ignore_index, include_background, weight, batch_dice, reduction
    )
    smooth, eps = check_smooth_eps(smooth, eps)
    return _GENERALIZED(input, target, weight, seg, reduction, batch_dice, smooth, eps)


generalized_dice_loss.backends = _GENERALIZED  # type: ignore[attr-defined]
