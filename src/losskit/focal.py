"""Focal losses (Lin et al. 2017): cross entropy down-weighted on well-classified examples.

Both forms compute the modulating factor :math:`(1 - p_t)^\\gamma` in log space,
:math:`\\exp(\\gamma \\log(1 - p_t))`, with :math:`\\log(1 - p_t)` taken from a log-sigmoid (binary
form) or a log-sum-exp over the other classes (softmax form). It never rounds to ``log 0`` for
finite logits, so the loss and its gradient stay finite for every ``gamma >= 0``, including
``gamma < 1`` at :math:`p_t \\to 1`, where :math:`x^\\gamma` has an infinite derivative at 0 and
the textbook form ``(1 - p_t) ** gamma`` gives NaN gradients.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._binary_logits import binary_logit_loss
from ._checks import (
    check_class_indices,
    check_floating,
    check_int,
    check_number,
    check_same_device,
    check_same_shape,
    check_tensor,
    check_values_in,
)
from ._precision import upcast
from ._reduction import check_reduction, reduce, weighted_mean
from .kernels import dispatch as _kernels

__all__ = ["sigmoid_focal_loss", "softmax_focal_loss"]


def check_gamma(gamma: object) -> float:
    """``gamma`` must be a finite real number ``>= 0`` (shared with the Module constructors)."""
    g = check_number("gamma", gamma)
    if not (0.0 <= g < math.inf):
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    return g


def check_binary_alpha(alpha: object) -> float:
    """``alpha`` of the binary form: in ``[0, 1]``, or negative to disable the balance term."""
    a = check_number("alpha", alpha)
    if a > 1.0:
        raise ValueError(
            f"alpha must be in [0, 1] (or negative to disable the class-balance term), got {alpha!r}"
        )
    return a


def check_class_alpha(alpha: object) -> torch.Tensor | None:
    """``alpha`` of the softmax form: ``None`` or a floating tensor (its length is checked later)."""
    if alpha is None:
        return None
    if not isinstance(alpha, torch.Tensor):
        raise TypeError(
            f"alpha must be None or a 1-D floating tensor of per-class weights, "
            f"got {type(alpha).__name__}"
        )
    return check_floating("alpha", alpha)


def _check_binary_target(target: object) -> torch.Tensor:
    target = check_tensor("target", target)
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(
            f"target must be a floating or integer tensor of labels in [0, 1], got {target.dtype}"
        )
    return target


def sigmoid_focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Focal loss of binary or multi-label logits (each element an independent binary problem).

    With :math:`p = \sigma(x)`, :math:`p_t = p\,y + (1 - p)(1 - y)` and
    :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`:

    .. math::
        \ell = -\alpha_t\,(1 - p_t)^\gamma\,[\,y \log p + (1 - y) \log(1 - p)\,]

    computed as :math:`\alpha_t (1 - p_t)^\gamma\,\mathrm{BCE}(x, y)` with :math:`1 - p_t =
    (1 - y)\,\sigma(x) + y\,\sigma(-x)` and BCE from :math:`\log\sigma(\pm x)` (never
    :math:`1 - \sigma`), and the gradient in closed form during the forward (so that only the
    forward's passes over memory are paid); a backward with ``create_graph=True`` recomputes it
    with autograd recording, so it can be differentiated again.

    Args:
        input: logits, any shape, e.g. ``(N, C)`` for multi-label or ``(N,)`` for binary.
        target: same shape as ``input``, labels in ``[0, 1]`` (hard 0/1 or soft), floating or
            integer. Treated as constant: no gradient flows to it.
        alpha: weight of the positive class in ``[0, 1]``, negatives get ``1 - alpha``; a
            negative value disables the class-balance term (:math:`\alpha_t = 1`), as torchvision.
        gamma: focusing parameter :math:`\gamma \ge 0`; ``0`` gives ``alpha_t``-weighted BCE.
        reduction: ``"none"`` (``input``'s shape), ``"mean"`` over all elements, or ``"sum"``.

    Returns:
        The loss, a scalar unless ``reduction="none"``; the dtype of ``input``.

    Edge cases: with ``gamma=0`` (and ``alpha < 0``) this is exactly
    :func:`losskit.binary_cross_entropy_with_logits`. Finite loss and gradient for any finite
    logit (±1e4 included) and any ``gamma >= 0``; the gradient at :math:`p_t = 1` is 0 even for
    ``gamma < 1``. An empty input gives NaN for ``mean`` and 0 for ``sum``. A target outside
    ``[0, 1]`` raises ``ValueError`` (a value check, see :func:`losskit.set_checks`).

    Example:
        >>> logits = torch.randn(8, 80, requires_grad=True)
        >>> target = (torch.rand(8, 80) < 0.1).float()
        >>> losskit.sigmoid_focal_loss(logits, target, alpha=0.25, gamma=2.0).backward()

    Reference: T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017. Same values
    as :func:`torchvision.ops.sigmoid_focal_loss`.
    """
    input = check_floating("input", input)
    target = _check_binary_target(target)
    check_same_shape("input", input, "target", target)
    reduction = check_reduction(reduction)
    alpha = check_binary_alpha(alpha)
    gamma = check_gamma(gamma)
    check_values_in("target", target, 0.0, 1.0)
    fast = _kernels.maybe_sigmoid_focal_loss(input, target, alpha, gamma, reduction)
    if fast is not None:
        return fast

    x = upcast(input)
    y = target.detach().to(x.dtype)
    # gamma = 0 goes through the same code as losskit.binary_cross_entropy_with_logits: equal bit
    # for bit.
    loss = binary_logit_loss(x, y, None, alpha if alpha >= 0.0 else None, gamma)
    return reduce(loss, reduction).to(input.dtype)


def _check_class_shapes(input: torch.Tensor, target: torch.Tensor) -> None:
    if input.dim() == 0:
        raise ValueError("input must be (C,), (N, C) or (N, C, d1, ..., dK); got a 0-D tensor")
    check_same_device("target", target, input)
    expected = () if input.dim() == 1 else (input.shape[0], *input.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"Expected target size {expected} for input of shape {tuple(input.shape)} "
            f"(class indices), got {tuple(target.shape)}"
        )


def _check_alpha_length(alpha: torch.Tensor | None, num_classes: int, like: torch.Tensor) -> None:
    if alpha is None:
        return
    if alpha.dim() != 1 or alpha.numel() != num_classes:
        raise ValueError(
            f"alpha must be a 1-D tensor with one weight per class ({num_classes}), "
            f"got shape {tuple(alpha.shape)}"
        )
    check_same_device("alpha", alpha, like)


def softmax_focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    alpha: torch.Tensor | None = None,
    gamma: float = 2.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Focal loss of multi-class logits with class-index targets (softmax over the class dim).

    With :math:`p = \operatorname{softmax}(x)` over the class dimension and :math:`y_i` the
    target class of position :math:`i`:

    .. math::
        \ell_i = -\alpha_{y_i}\,(1 - p_{i,y_i})^\gamma \log p_{i,y_i}

    where :math:`\log(1 - p_{i,y}) = \operatorname{logsumexp}_{c \ne y} \log p_{i,c}` (no
    cancellation as :math:`p_{i,y} \to 1`).

    Args:
        input: logits, shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``; floating.
        target: class indices (integer) of shape ``()``, ``(N,)`` or ``(N, d1, ..., dK)``, each in
            ``[0, C)`` or equal to ``ignore_index``.
        alpha: optional per-class weight :math:`\alpha_c`, shape ``(C,)`` (like ``weight`` of
            cross entropy); ``None`` weighs every class 1.
        gamma: focusing parameter :math:`\gamma \ge 0`.
        ignore_index: target value that contributes neither loss nor weight.
        reduction: ``"none"`` (the target's shape), ``"sum"``, or ``"mean"``: the sum divided by
            :math:`\sum_i \alpha_{y_i}` over the non-ignored positions (their count without
            ``alpha``), the normalisation of cross entropy.

    Returns:
        The loss, a scalar unless ``reduction="none"``; the dtype of ``input``.

    Edge cases: with ``gamma=0`` this equals :func:`losskit.cross_entropy` (and
    :func:`torch.nn.functional.cross_entropy`) with ``weight=alpha``, in every reduction. As there,
    an empty batch or a batch whose targets are all ignored gives NaN for ``mean`` (with zero
    gradient) and 0 for ``sum``. Finite loss and gradient for any finite logits and any
    ``gamma >= 0``. A class index out of range raises ``IndexError`` (a value check).

    Example:
        >>> logits = torch.randn(4, 5, 16, 16, requires_grad=True)
        >>> target = torch.randint(5, (4, 16, 16))
        >>> losskit.softmax_focal_loss(logits, target, gamma=2.0).backward()

    Reference: T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017 (the
    multi-class form of their appendix, with a softmax instead of per-class sigmoids).
    """
    input = check_floating("input", input)
    target = check_tensor("target", target)
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(
            f"target must be an integer tensor of class indices (int64), got dtype {target.dtype}"
        )
    reduction = check_reduction(reduction)
    alpha = check_class_alpha(alpha)
    gamma = check_gamma(gamma)
    ignore_index = check_int("ignore_index", ignore_index)
    _check_class_shapes(input, target)
    unbatched = input.dim() == 1
    if unbatched:  # (C,) input: a batch of one
        input, target = input.unsqueeze(0), target.unsqueeze(0)
    num_classes = input.shape[1]
    _check_alpha_length(alpha, num_classes, input)
    check_class_indices(target, num_classes, ignore_index)

    x = upcast(input)
    keep = target != ignore_index
    safe_target = torch.where(keep, target, 0).long().unsqueeze(1)
    log_probs = F.log_softmax(x, dim=1)
    loss = -log_probs.gather(1, safe_target).squeeze(1)
    if gamma != 0.0:
        is_target = torch.zeros_like(x, dtype=torch.bool).scatter_(1, safe_target, True)
        # log(1 - p_y) = logsumexp of the other classes' log-probabilities: finite for finite
        # logits even where p_y rounds to 1 (for C = 1 it is -inf and the factor is exactly 0).
        log_q = torch.logsumexp(log_probs.masked_fill(is_target, -math.inf), 1)
        loss = torch.exp(gamma * log_q) * loss
    if alpha is None:
        target_weight = keep.to(x.dtype)
    else:
        target_weight = upcast(alpha)[safe_target.squeeze(1)] * keep
        loss = loss * target_weight
    # where(), not a product with the mask: it keeps ignored positions out of the gradient.
    loss = torch.where(keep, loss, x.new_zeros(()))
    out = weighted_mean(loss, target_weight) if reduction == "mean" else reduce(loss, reduction)
    if unbatched and reduction == "none":
        out = out.squeeze(0)
    return out.to(input.dtype)
