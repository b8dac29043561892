"""Classification losses mirroring ``torch.nn.functional``: cross entropy, NLL, binary cross entropy.

Each function validates its arguments (see :mod:`losskit._checks`), computes in float32 for
float16/bfloat16 inputs and returns the input's dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._binary_logits import binary_logit_loss
from ._checks import (
    check_broadcasts_to,
    check_class_indices,
    check_class_weight,
    check_floating,
    check_int,
    check_optional_floating,
    check_range,
    check_same_device,
    check_same_shape,
    check_tensor,
    check_values_in,
)
from ._precision import upcast
from ._reduction import check_reduction, reduce, weighted_mean
from .kernels import dispatch as _kernels

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "multilabel_soft_margin_loss",
    "nll_loss",
]


def _index_target_shape(input: torch.Tensor) -> tuple[int, ...]:
    # (N, C, d1, ..., dK) -> (N, d1, ..., dK)
    return (input.shape[0], *input.shape[2:])


def _check_class_input(input: object, target: object) -> tuple[torch.Tensor, torch.Tensor]:
    input = check_floating("input", input)
    target = check_tensor("target", target)
    if input.dim() == 0:
        raise ValueError("input must be (C,), (N, C) or (N, C, d1, ..., dK); got a 0-D tensor")
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(
            "target must hold class indices (int64) or class probabilities (floating), "
            f"got dtype {target.dtype}"
        )
    check_same_device("target", target, input)
    return input, target


def _check_index_target(input: torch.Tensor, target: torch.Tensor) -> None:
    expected = _index_target_shape(input)
    if tuple(target.shape) != expected:
        raise ValueError(
            f"Expected target size {expected} for input of shape {tuple(input.shape)} "
            f"(class indices), got {tuple(target.shape)}"
        )


def _nll_from_log_probs(
    log_probs: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """NLL of class-index targets on (N, C, d1..dK) log-probabilities, with label smoothing.

    ``loss_i = w[y_i] * (-(1 - eps) * logp[i, y_i]) + eps / C * sum_c w[c] * (-logp[i, c])``;
    ``mean`` divides by the summed weight ``w[y_i]`` of the non-ignored targets (NaN if none).
    """
    num_classes = log_probs.shape[1]
    keep = target != ignore_index
    safe_target = torch.where(keep, target, 0).long()
    if num_classes:
        picked = log_probs.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    else:  # no class at all: every target is ignored (checked), and there is nothing to pick
        picked = log_probs.sum(1)  # zeros, still attached to the graph
    if weight is None:
        target_weight = keep.to(log_probs.dtype)
    else:
        target_weight = weight[safe_target] * keep
    zero = log_probs.new_zeros(())
    # where(), not a product with the mask: an ignored row may hold -inf log-probabilities.
    nll = torch.where(keep, -picked * target_weight, zero)

    if label_smoothing > 0.0:
        # eps / C; with no class at all (every target ignored) torch's 0/0 gives NaN.
        smoothing_per_class = label_smoothing / num_classes if num_classes else math.nan
        shape = [1, num_classes] + [1] * (log_probs.dim() - 2)
        weighted = log_probs if weight is None else log_probs * weight.view(shape)
        smooth = torch.where(keep, -weighted.sum(1), zero)
    else:
        smooth = None

    if reduction == "none":
        loss = nll
        if smooth is not None:
            loss = (1.0 - label_smoothing) * nll + smoothing_per_class * smooth
        return loss
    if reduction == "sum":
        total = nll.sum()
        if smooth is not None:
            total = (1.0 - label_smoothing) * total + smoothing_per_class * smooth.sum()
        return total
    # mean
    mean = weighted_mean(nll, target_weight)
    if smooth is not None:
        smooth_mean = weighted_mean(smooth, target_weight)
        mean = (1.0 - label_smoothing) * mean + smoothing_per_class * smooth_mean
    return mean


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    r"""Cross entropy between logits and class-index or class-probability targets.

    With class indices :math:`y_i` and :math:`\log p = \operatorname{log\_softmax}(x)` over the class
    dimension, smoothing :math:`\varepsilon` and class weights :math:`w`:

    .. math::
        \ell_i = -(1-\varepsilon)\, w_{y_i} \log p_{i,y_i}
                 - \frac{\varepsilon}{C} \sum_c w_c \log p_{i,c}

    With class probabilities :math:`t` (same shape as ``input``), :math:`t' = (1-\varepsilon) t +
    \varepsilon / C` and :math:`\ell_i = -\sum_c w_c t'_{i,c} \log p_{i,c}`.

    Args:
        input: logits, shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``; floating.
        target: class indices (integer) of shape ``()``, ``(N,)`` or ``(N, d1, ..., dK)``, each in
            ``[0, C)`` or equal to ``ignore_index``; or class probabilities of ``input``'s shape.
        weight: optional per-class weight, shape ``(C,)``.
        ignore_index: target value that contributes neither loss nor weight (index targets only).
        reduction: ``"none"`` (shape of the target without the class dimension), ``"mean"`` or
            ``"sum"``. For index targets ``mean`` divides by :math:`\sum_i w_{y_i}` over the
            non-ignored targets; for probability targets by the number of positions ``N·d1···dK``.
        label_smoothing: :math:`\varepsilon \in [0, 1]`.

    Returns:
        The loss, a scalar unless ``reduction="none"``; the dtype of ``input``.

    Edge cases (as torch): an empty batch gives NaN for ``mean`` and 0 for ``sum``; a batch whose
    targets are all ignored gives NaN for ``mean`` (with zero gradient) and 0 for ``sum``. A class
    index out of range raises ``IndexError`` on every device (see :func:`losskit.set_checks`).

    Example:
        >>> logits = torch.randn(8, 5, requires_grad=True)
        >>> losskit.cross_entropy(logits, torch.randint(5, (8,)), label_smoothing=0.1).backward()

    Mirrors :func:`torch.nn.functional.cross_entropy` (without the legacy ``size_average``/``reduce``).
    """
    input, target = _check_class_input(input, target)
    reduction = check_reduction(reduction)
    ignore_index = check_int("ignore_index", ignore_index)
    label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0)
    weight = check_optional_floating("weight", weight)
    unbatched = input.dim() == 1
    if unbatched:  # (C,) input: a batch of one
        input = input.unsqueeze(0)
        target = target.unsqueeze(0)
    num_classes = input.shape[1]
    check_class_weight(weight, num_classes, input)

    w = upcast(weight)
    if target.is_floating_point():
        check_same_shape("input", input, "target", target)
        if ignore_index != -100:  # as torch: a probability target has no index to ignore
            raise ValueError(
                "ignore_index is not supported for class-probability (floating) targets, "
                f"got ignore_index={ignore_index}"
            )
        log_probs = F.log_softmax(upcast(input), dim=1)
        probs = upcast(target)
        if label_smoothing > 0.0:
            probs = probs * (1.0 - label_smoothing) + label_smoothing / num_classes
        if w is not None:
            probs = probs * w.view([1, num_classes] + [1] * (input.dim() - 2))
        loss = -(log_probs * probs).sum(1)
        out = reduce(loss, reduction)
    else:
        _check_index_target(input, target)
        check_class_indices(target, num_classes, ignore_index)
        out = _kernels.maybe_cross_entropy(
            input, target, weight, ignore_index, reduction, label_smoothing
        )
        if out is None:  # no fused kernel for this call: the PyTorch formula
            log_probs = F.log_softmax(upcast(input), dim=1)
            out = _nll_from_log_probs(
                log_probs, target, w, ignore_index, reduction, label_smoothing
            )
    if unbatched and reduction == "none":
        out = out.squeeze(0)
    return out.to(input.dtype)


def nll_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Negative log-likelihood of class-index targets given log-probabilities.

    .. math:: \ell_i = -w_{y_i}\, x_{i, y_i}

    ``input`` is usually ``log_softmax`` output. The K-dimensional form ``(N, C, H, W)`` with a
    ``(N, H, W)`` target is the segmentation case (the old ``NLLLoss2d``).

    Args:
        input: log-probabilities, shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``.
        target: class indices of shape ``()``, ``(N,)`` or ``(N, d1, ..., dK)``, in ``[0, C)``
            or equal to ``ignore_index``.
        weight: optional per-class weight, shape ``(C,)``.
        ignore_index: target value that is skipped.
        reduction: ``"none" | "mean" | "sum"``; ``mean`` is :math:`\sum_i \ell_i / \sum_i w_{y_i}`
            over non-ignored targets.

    Returns:
        Scalar, or the target's shape for ``reduction="none"``.

    Edge cases as :func:`cross_entropy` (empty or all-ignored ``mean`` is NaN, ``sum`` is 0).

    Example:
        >>> losskit.nll_loss(torch.randn(4, 3, 8, 8).log_softmax(1), torch.randint(3, (4, 8, 8)))

    Mirrors :func:`torch.nn.functional.nll_loss`.
    """
    input, target = _check_class_input(input, target)
    reduction = check_reduction(reduction)
    if target.is_floating_point():
        raise TypeError(f"target must be an integer tensor of class indices, got {target.dtype}")
    ignore_index = check_int("ignore_index", ignore_index)
    weight = check_optional_floating("weight", weight)
    unbatched = input.dim() == 1
    if unbatched:
        input = input.unsqueeze(0)
        target = target.unsqueeze(0)
    num_classes = input.shape[1]
    check_class_weight(weight, num_classes, input)
    _check_index_target(input, target)
    check_class_indices(target, num_classes, ignore_index)
    out = _nll_from_log_probs(upcast(input), target, upcast(weight), ignore_index, reduction)
    if unbatched and reduction == "none":
        out = out.squeeze(0)
    return out.to(input.dtype)


def _check_binary(
    input: object, target: object, weight: object
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    input = check_floating("input", input)
    target = check_floating("target", target)
    check_same_shape("input", input, "target", target)
    weight = check_optional_floating("weight", weight)
    if weight is not None:
        check_broadcasts_to("weight", weight, input)
    return input, target, weight


def binary_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Binary cross entropy between probabilities and targets.

    .. math:: \ell = -w\,[\,y \log x + (1 - y) \log(1 - x)\,]

    Each log is clamped to ``>= -100`` (as torch), so the loss is finite at ``x`` in ``{0, 1}``.
    Prefer :func:`binary_cross_entropy_with_logits` on logits: it is stable and fuses the sigmoid.

    Args:
        input: probabilities in ``[0, 1]``, any shape.
        target: same shape as ``input``, usually in ``[0, 1]``.
        weight: optional rescaling weight broadcastable to ``input``.
        reduction: ``"none" | "mean" | "sum"`` (``mean`` over all elements).

    Returns:
        Scalar, or ``input``'s shape for ``reduction="none"``.

    Raises ``ValueError`` if an element of ``input`` or ``target`` is outside ``[0, 1]`` or NaN (a
    value check, as torch).
    As torch, each log is clamped at -100 and the input gradient is
    :math:`w\,(x - y) / \max(x (1 - x), 10^{-12})`: finite for every probability, 0 and 1
    included (the exact derivative :math:`-y/x` overflows float32 for :math:`x < 3 \cdot 10^{-39}`).

    Mirrors :func:`torch.nn.functional.binary_cross_entropy`.
    """
    input, target, weight = _check_binary(input, target, weight)
    reduction = check_reduction(reduction)
    check_values_in("input", input, 0.0, 1.0)
    check_values_in("target", target, 0.0, 1.0)
    x, y = upcast(input), upcast(target)
    loss = _BinaryCrossEntropy.apply(x, y)
    if weight is not None:
        loss = loss * upcast(weight)
    return reduce(loss, reduction).to(input.dtype)


# Each log is clamped at -100, and the input gradient's denominator x (1 - x) at 1e-12: torch's
# conventions, which keep both finite for every probability (1 / x alone overflows float32 for
# x < 3e-39, and is 0 where the log is clamped).
_LOG_FLOOR = -100.0
_GRAD_EPS = 1e-12


class _BinaryCrossEntropy(torch.autograd.Function):
    """Unreduced ``-(y log x + (1 - y) log(1 - x))`` with torch's clamped logs and gradient.

    The backward is made of differentiable ops (so double backward works), and the
    ``setup_context`` form with a generated vmap rule and a ``jvp`` lets ``torch.func`` through.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        log_x, log_1mx = _clamped_logs(x)
        return -(y * log_x + (1.0 - y) * log_1mx)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, y = ctx.saved_tensors
        grad_x = grad_y = None
        if ctx.needs_input_grad[0]:
            grad_x = grad * _input_grad(x, y)
        if ctx.needs_input_grad[1]:
            grad_y = grad * _target_grad(x)
        return grad_x, grad_y

    @staticmethod
    def jvp(ctx, x_t: torch.Tensor | None, y_t: torch.Tensor | None):  # type: ignore[override]
        x, y = ctx.saved_tensors
        out = None
        if x_t is not None:
            out = _input_grad(x, y) * x_t
        if y_t is not None:
            term = _target_grad(x) * y_t
            out = term if out is None else out + term
        return out


def _input_grad(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y) / (x * (1.0 - x)).clamp_min(_GRAD_EPS)


def _target_grad(x: torch.Tensor) -> torch.Tensor:
    log_x, log_1mx = _clamped_logs(x)
    return log_1mx - log_x


def _clamped_logs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log x`` and ``log(1 - x)`` (from log1p: exact for small x), each at least -100."""
    return torch.log(x).clamp_min(_LOG_FLOOR), torch.log1p(-x).clamp_min(_LOG_FLOOR)


def binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Binary cross entropy on logits, in the numerically stable form.

    With :math:`l_w = 1 + (p_w - 1)\,y` (``pos_weight`` :math:`p_w` scales the positive term):

    .. math::
        \ell = w\,[\,(1 - y)\,x + l_w\,(\log(1 + e^{-|x|}) + \max(-x, 0))\,]
             = -w\,[\,p_w\, y \log\sigma(x) + (1 - y) \log(1 - \sigma(x))\,]

    Args:
        input: logits, any shape ``(*, C)``.
        target: same shape as ``input``, in ``[0, 1]``.
        weight: optional rescaling weight broadcastable to ``input``.
        reduction: ``"none" | "mean" | "sum"`` (``mean`` over all elements).
        pos_weight: optional weight of positive examples broadcastable to ``input``, usually of
            shape ``(C,)``: one weight per class, broadcast over the last (class) dimension.

    Returns:
        Scalar, or ``input``'s shape for ``reduction="none"``.

    Finite for logits of any magnitude (±1e4 included), except where ``pos_weight`` times the loss
    overflows the dtype (then inf, as torch). Mirrors
    :func:`torch.nn.functional.binary_cross_entropy_with_logits`.
    """
    input, target, weight = _check_binary(input, target, weight)
    reduction = check_reduction(reduction)
    pos_weight = check_optional_floating("pos_weight", pos_weight)
    if pos_weight is not None:
        check_broadcasts_to("pos_weight", pos_weight, input)
    fast = _kernels.maybe_binary_cross_entropy_with_logits(
        input, target, weight, reduction, pos_weight
    )
    if fast is not None:
        return fast
    x, y = upcast(input), upcast(target)
    loss = binary_logit_loss(x, y, None if pos_weight is None else upcast(pos_weight))
    if weight is not None:
        loss = loss * upcast(weight)
    return reduce(loss, reduction).to(input.dtype)


def multilabel_soft_margin_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""One-versus-all logistic loss for multi-label classification, averaged over classes.

    .. math::
        \ell_i = -\frac{1}{C} \sum_c w_c\,[\,y_{ic} \log\sigma(x_{ic})
                 + (1 - y_{ic}) \log\sigma(-x_{ic})\,]

    Args:
        input: logits, shape ``(N, C)`` or ``(C,)``.
        target: same shape, entries in ``{0, 1}`` (floating or integer).
        weight: optional per-class weight, shape ``(C,)`` (broadcastable to ``input``).
        reduction: ``"none"`` (shape ``(N,)``), ``"mean"`` or ``"sum"`` over the batch.

    Mirrors :func:`torch.nn.functional.multilabel_soft_margin_loss`.
    """
    input = check_floating("input", input)
    target = check_tensor("target", target)
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"target must be a floating or integer tensor, got {target.dtype}")
    check_same_shape("input", input, "target", target)
    reduction = check_reduction(reduction)
    if input.dim() not in (1, 2):
        raise ValueError(f"input must be (C,) or (N, C), got shape {tuple(input.shape)}")
    weight = check_optional_floating("weight", weight)
    if weight is not None:
        check_broadcasts_to("weight", weight, input)
    x = upcast(input)
    y = target.to(x.dtype)
    loss = -(y * F.logsigmoid(x) + (1.0 - y) * F.logsigmoid(-x))
    if weight is not None:
        loss = loss * upcast(weight)
    loss = loss.sum(-1) / input.shape[-1]
    return reduce(loss, reduction).to(input.dtype)
