"""Lovász-softmax and Lovász hinge losses (Berman et al. 2018), vectorised over (image, class).

Every row (one image and class, or one class over the batch with ``batch_dice``) is sorted at once
by ``torch.sort(dim=-1)`` (on the CPU as integers, see :func:`_descending_order`); there is no
Python loop over images or classes. Ignored pixels get the
sort key ``-inf``: they land after every kept pixel, so the running sums that make the Lovász
gradient of the kept pixels never see them, and their error is multiplied by 0 (``relu(-inf)``).
"""

from __future__ import annotations

import torch

from .._autograd import functorch_active
from .._checks import check_bool
from .._dispatch import Backends
from .._precision import upcast
from ._contract import (
    check_seg,
    class_probs,
    kept_weight,
    reduce_classes,
    target_probs,
)

__all__ = ["lovasz_hinge_loss", "lovasz_softmax_loss"]

CLASS_MODES = ("present", "all")


def check_classes(classes: object) -> str:
    if classes not in CLASS_MODES:
        raise ValueError(f"classes must be one of {CLASS_MODES}, got {classes!r}")
    return classes  # type: ignore[return-value]


def _rows(x: torch.Tensor, batch_dice: bool) -> torch.Tensor:
    """``(N, C, S)`` to rows: ``(N, C, S)`` per image, ``(C, N·S)`` over the batch."""
    return x.transpose(0, 1).reshape(x.shape[1], -1) if batch_dice else x


_INT_VIEW = {torch.float32: torch.int32, torch.float64: torch.int64}


def _descending_order(key: torch.Tensor, signed: bool) -> torch.Tensor:
    """``argsort(key, descending=True)`` along the last dim (``signed``: keys may be negative;
    otherwise they are ``>= 0`` or ``-inf``).

    On the CPU the float keys are sorted as integers: the IEEE bit patterns of non-negative
    floats order as the floats do (``-inf`` is a negative integer: last), and flipping the
    magnitude bits of negative values extends that to every float. The CPU integer sort is about
    1.5x faster than the float one, and the sort is most of the loss's time. Ties (equal errors)
    may come in another order, which leaves the value unchanged.
    """
    key = key.detach()
    as_int = _INT_VIEW.get(key.dtype)
    if (
        as_int is None
        or key.device.type != "cpu"
        or torch.compiler.is_compiling()
        or functorch_active()
    ):
        return torch.sort(key, dim=-1, descending=True)[1]
    bits = key.contiguous().view(as_int)
    if signed:
        info = torch.iinfo(as_int)
        bits = bits ^ ((bits >> (info.bits - 1)) & info.max)
    return torch.sort(bits, dim=-1, descending=True)[1]


def lovasz_rows(
    errors: torch.Tensor, gt: torch.Tensor, keep: torch.Tensor | None, signed: bool = False
) -> torch.Tensor:
    """``Σ_k relu(e_(k)) (J_k - J_{k-1})`` per row, errors sorted in decreasing order.

    ``J_k = 1 - (G - Σ_{j<=k} gt_(j)) / (G + Σ_{j<=k} (1 - gt_(j)))`` is the Jaccard loss of the
    top-k pixels (Berman et al., Algorithm 1); ``G`` the row's target mass over kept pixels.
    ``gt`` is a constant (no gradient), so the increments ``J_k - J_{k-1}`` are too: they are
    scattered back to each pixel's place and the loss is ``Σ_i relu(e_i) ΔJ_rank(i)`` (no
    gather of the errors, nothing to un-sort in the backward). ``signed``: errors may be < 0.
    """
    key = errors if keep is None else torch.where(keep, errors, float("-inf"))
    order = _descending_order(key, signed)
    gt_sorted = gt.gather(-1, order)
    total = gt.sum(-1, keepdim=True)
    inter = total - gt_sorted.cumsum(-1)
    union = total + (1.0 - gt_sorted).cumsum(-1)  # >= 1 at every position for hard targets
    jaccard = 1.0 - inter / union
    step = torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)
    step = torch.empty_like(step).scatter_(-1, order, step)  # back to each pixel's place
    return (torch.relu(key) * step).sum(-1)


def _reduce_present(
    loss: torch.Tensor,
    present: torch.Tensor,
    weight: torch.Tensor | None,
    reduction: str,
) -> torch.Tensor:
    """Berman's ``classes="present"``: each image's mean over the classes in its target (0 if
    none), then the mean over images; ``none`` and ``sum`` give absent classes 0."""
    w = present.to(loss.dtype) if weight is None else present * weight
    weighted = loss * w
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return weighted.sum()
    mass = w.sum(-1)
    per_row = torch.where(mass > 0, weighted.sum(-1) / mass.clamp_min(1e-30), 0.0)
    return per_row.mean()


def _lovasz_softmax_formula(input, target, weight, seg, reduction, batch_dice, classes):
    p, t, keep = class_probs(input, target, seg)
    if keep is not None:
        keep = _rows(keep.expand(-1, p.shape[1], -1), batch_dice)
    p, t = _rows(p, batch_dice), _rows(t, batch_dice)
    loss = lovasz_rows((t - p).abs(), t, keep)
    w = kept_weight(weight, seg, loss.dtype)
    if classes == "all":
        return reduce_classes(loss, w, reduction).to(input.dtype)
    return _reduce_present(loss, t.sum(-1) > 0, w, reduction).to(input.dtype)


_LOVASZ_SOFTMAX = Backends("lovasz_softmax_loss", formula=_lovasz_softmax_formula)


def lovasz_softmax_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    classes: str = "present",
    activation: str | None = "softmax",
    ignore_index: int | None = None,
    include_background: bool = True,
    weight: torch.Tensor | None = None,
    batch_dice: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Lovász-softmax loss (Berman et al.): the convex Lovász extension of the Jaccard loss.

    Per row :math:`r` (one image and class; one class over the batch with ``batch_dice``), with
    errors :math:`e_i = |t_{ic} - p_{ic}|` over the kept pixels sorted so that
    :math:`e_{(1)} \ge e_{(2)} \ge \dots`, :math:`G = \sum_i t_{ic}` and
    :math:`J_k = 1 - \frac{G - \sum_{j \le k} t_{(j)}}{G + \sum_{j \le k} (1 - t_{(j)})}`
    (:math:`J_0 = 0`):

    .. math::
        \ell_r = \sum_k e_{(k)}\,(J_k - J_{k-1})

    Args:
        input: logits ``(N, C, d1, ..., dK)``; target: class indices ``(N, d1, ..., dK)`` or
            hard one-hot of ``input``'s shape (soft targets are used as given in the formula).
        classes: ``"present"`` (Berman's default): the mean over the classes present in each
            image's (the batch's) kept target, 0 for an image without any; ``"all"``: every class.
        activation, ignore_index, include_background, weight: as :func:`dice_loss`.
        batch_dice: one row per class over the whole batch (Berman's ``per_image=False``);
            ``False`` (default) is ``per_image=True``.
        reduction: ``"none"`` (``(N, C')`` or ``(C',)``; absent classes 0 with ``"present"``),
            ``"mean"`` (over classes, then images) or ``"sum"``.

    Returns:
        A scalar, or the per-row losses for ``"none"``; the dtype of ``input``.

    Edge cases: an image whose pixels are all ignored contributes 0 (and counts in the mean over
    images, as in Berman's code). Ties in the errors are broken by ``torch.sort`` (the loss is
    continuous there).

    Conventions: smp ``LovaszLoss("multiclass", per_image=b, ignore_index=k)`` is
    ``lovasz_softmax_loss(..., batch_dice=not b, ignore_index=k)`` (defaults differ: smp's
    ``per_image=False`` is our ``batch_dice=True``); smp loops over images and classes in Python,
    we sort all rows in one call. MONAI has no Lovász loss.

    Example:
        >>> logits = torch.randn(2, 3, 16, 16, requires_grad=True)
        >>> losskit.segmentation.lovasz_softmax_loss(logits, torch.randint(3, (2, 16, 16))).backward()

    Reference: M. Berman, A. Rannen Triki and M. B. Blaschko, "The Lovász-Softmax loss: A tractable
    surrogate for the optimization of the intersection-over-union measure in neural networks",
    CVPR 2018.
    """
    input, target, weight, seg, reduction = check_seg(
        input,
        target,
        activation=activation,
        ignore_index=ignore_index,
        include_background=include_background,
        weight=weight,
        reduction=reduction,
    )
    batch_dice = check_bool("batch_dice", batch_dice)
    classes = check_classes(classes)
    return _LOVASZ_SOFTMAX(input, target, weight, seg, reduction, batch_dice, classes)


lovasz_softmax_loss.backends = _LOVASZ_SOFTMAX  # type: ignore[attr-defined]


def _lovasz_hinge_formula(input, target, weight, seg, reduction, batch_dice):
    x = upcast(input)
    t, keep = target_probs(target, seg, x.dtype)
    n, c = x.shape[0], x.shape[1]
    x, t = x.reshape(n, c, -1), t.reshape(n, c, -1)
    if not seg.include_background:
        x, t = x[:, 1:], t[:, 1:]
    errors = 1.0 - x * (2.0 * t - 1.0)
    rows_keep = None
    if keep is not None:
        rows_keep = _rows(keep.reshape(n, 1, -1).expand(-1, x.shape[1], -1), batch_dice)
    loss = lovasz_rows(_rows(errors, batch_dice), _rows(t, batch_dice), rows_keep, signed=True)
    return reduce_classes(loss, kept_weight(weight, seg, loss.dtype), reduction).to(input.dtype)


_LOVASZ_HINGE = Backends("lovasz_hinge_loss", formula=_lovasz_hinge_formula)


def lovasz_hinge_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int | None = None,
    include_background: bool = True,
    weight: torch.Tensor | None = None,
    batch_dice: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Lovász hinge loss (Berman et al.): binary (per-channel) Jaccard surrogate on logits.

    Each channel is a binary problem. Per row (image and channel; channel over the batch with
    ``batch_dice``), with signs :math:`s_i = 2 t_i - 1`, hinge errors
    :math:`e_i = 1 - x_i s_i` over the kept pixels sorted decreasingly and :math:`J_k` as in
    :func:`lovasz_softmax_loss`:

    .. math::
        \ell_r = \sum_k \max(e_{(k)}, 0)\,(J_k - J_{k-1})

    Args:
        input: logits ``(N, C, d1, ..., dK)`` (no activation: the hinge acts on logits).
        target: binary labels: for ``C = 1`` an index target ``(N, d1, ..., dK)`` of ``{0, 1}``;
            for ``C > 1`` class indices (one-hot over the channels) or a 0/1 tensor of
            ``input``'s shape (multi-label).
        ignore_index, include_background, weight, batch_dice, reduction: as
            :func:`lovasz_softmax_loss` (every channel counts, present or not).

    Returns:
        A scalar, or ``(N, C')`` / ``(C',)`` for ``"none"``; the dtype of ``input``.

    Conventions: smp ``LovaszLoss("binary", per_image=b, ignore_index=k)`` on ``(N, 1, H, W)``
    logits is ``lovasz_hinge_loss(..., batch_dice=not b, ignore_index=k)``; smp's per-image mode
    loops over images in Python.

    Example:
        >>> logits = torch.randn(2, 1, 16, 16, requires_grad=True)
        >>> losskit.segmentation.lovasz_hinge_loss(logits, torch.randint(2, (2, 16, 16))).backward()

    Reference: M. Berman et al., CVPR 2018 (the binary Lovász hinge of section 3.1).
    """
    input, target, weight, seg, reduction = check_seg(
        input,
        target,
        activation="sigmoid",  # for the contract's checks; the formula uses the logits
        ignore_index=ignore_index,
        include_background=include_background,
        weight=weight,
        reduction=reduction,
    )
    batch_dice = check_bool("batch_dice", batch_dice)
    return _LOVASZ_HINGE(input, target, weight, seg, reduction, batch_dice)


lovasz_hinge_loss.backends = _LOVASZ_HINGE  # type: ignore[attr-defined]
