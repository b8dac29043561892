"""Classification losses mirroring ``torch.nn.functional``: cross entropy, NLL, binary cross entropy.

Each function validates its arguments (see :mod:`losskit._checks`), then calls its
:class:`~losskit._dispatch.Backends` record: torch's own native op (float16/bfloat16 inputs
computed in float32 around it and returned in their dtype), or on CUDA the fused Triton kernel of
cross entropy and BCE-with-logits. On the CPU the value checks that torch's op already makes
(class index in range, probabilities in [0, 1]) are left to it; its error is reworded into
losskit's (an ``IndexError`` / ``ValueError`` naming the value).
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as _fwad
import torch.nn.functional as F

from ._binary_logits import binary_logit_loss
from ._checks import (
    check_all_values_in,
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
    raise_class_index_error,
)
from ._dispatch import Backends
from ._precision import compute_as, compute_input, restore, upcast
from ._reduction import REDUCTION_ENUM, check_reduction, reduce
from .kernels.binary.rules import bce_with_logits_kernel, bce_with_logits_refuses
from .kernels.cross_entropy.rules import cross_entropy_kernel, cross_entropy_refuses

_nn = torch._C._nn

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "multilabel_soft_margin_loss",
    "nll_loss",
]


def _index_target_shape(input: torch.Tensor) -> tuple[int, ...]:
    # (N, C, d1, ..., dK) -> (N, d1, ..., dK); an unbatched (C,) -> ()
    return (input.shape[0], *input.shape[2:]) if input.dim() > 1 else ()


_TARGET_DTYPES = frozenset({torch.int64, torch.int32, torch.float32, torch.float64})


def _check_class_input(input: object, target: object) -> tuple[torch.Tensor, torch.Tensor]:
    input = check_floating("input", input)
    target = check_tensor("target", target)
    if input.dim() == 0:
        raise ValueError("input must be (C,), (N, C) or (N, C, d1, ..., dK); got a 0-D tensor")
    dtype = target.dtype
    if dtype not in _TARGET_DTYPES and (dtype == torch.bool or target.is_complex()):
        raise TypeError(
            "target must hold class indices (int64) or class probabilities (floating), "
            f"got dtype {dtype}"
        )
    check_same_device("target", target, input)
    return input, target


def _index_target_classes(input: torch.Tensor, target: torch.Tensor) -> int:
    """The number of classes, once the index target's shape is checked against the input's."""
    shape = input.shape
    if len(shape) == 2:  # the common (N, C) case: one read of each shape
        t_shape = target.shape
        if len(t_shape) == 1 and t_shape[0] == shape[0]:
            return shape[1]
    _check_index_target(input, target)
    return _num_classes(input)


def _check_index_target(input: torch.Tensor, target: torch.Tensor) -> None:
    if input.dim() == 2 and target.dim() == 1 and target.shape[0] == input.shape[0]:
        return  # the common (N, C) case, without building shapes
    expected = _index_target_shape(input)
    if tuple(target.shape) != expected:
        raise ValueError(
            f"Expected target size {expected} for input of shape {tuple(input.shape)} "
            f"(class indices), got {tuple(target.shape)}"
        )


def _num_classes(input: torch.Tensor) -> int:
    return input.shape[1] if input.dim() > 1 else input.shape[0]


def _long(target: torch.Tensor) -> torch.Tensor:
    """Class indices as int64 (torch's ops take no other width; losskit takes any integer)."""
    return target if target.dtype == torch.int64 else target.long()


def _cross_entropy_torch(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> torch.Tensor:
    x = compute_input(input)
    try:
        out = _nn.cross_entropy_loss(
            x,
            compute_as(target, x.dtype) if target.is_floating_point() else _long(target),
            compute_as(weight, x.dtype),
            REDUCTION_ENUM[reduction],
            ignore_index,
            label_smoothing,
        )
    except IndexError:  # torch's "Target 3 is out of bounds.": say more
        raise_class_index_error(target, _num_classes(input), ignore_index)
        raise
    return restore(out, input.dtype)


_CROSS_ENTROPY = Backends(
    "cross_entropy",
    torch=_cross_entropy_torch,
    kernel=cross_entropy_kernel,
    refuses={"kernel": cross_entropy_refuses},
)


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
    num_classes = _num_classes(input)
    check_class_weight(weight, num_classes, input)
    if target.is_floating_point():
        check_same_shape("input", input, "target", target)
        if ignore_index != -100:  # as torch: a probability target has no index to ignore
            raise ValueError(
                "ignore_index is not supported for class-probability (floating) targets, "
                f"got ignore_index={ignore_index}"
            )
    else:
        _check_index_target(input, target)
        check_class_indices(target, num_classes, ignore_index, native_rejects=True)
    return _CROSS_ENTROPY(input, target, weight, ignore_index, reduction, label_smoothing)


cross_entropy.backends = _CROSS_ENTROPY


def _nll_torch(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
) -> torch.Tensor:
    x = compute_input(input)
    try:
        out = _nn.nll_loss_nd(
            x, _long(target), compute_as(weight, x.dtype), REDUCTION_ENUM[reduction], ignore_index
        )
    except IndexError:
        raise_class_index_error(target, _num_classes(input), ignore_index)
        raise
    return restore(out, input.dtype)


_NLL = Backends("nll_loss", torch=_nll_torch)


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
    num_classes = _index_target_classes(input, target)
    check_class_weight(weight, num_classes, input)
    check_class_indices(target, num_classes, ignore_index, native_rejects=True)
    return _NLL(input, target, weight, ignore_index, reduction)


nll_loss.backends = _NLL


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
    check_all_values_in({"input": input, "target": target}, 0.0, 1.0, native_rejects=True)
    return _BCE(input, target, weight, reduction)


def _bce_torch(
    input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, reduction: str
) -> torch.Tensor:
    x = compute_input(input)
    if weight is not None:
        weight = compute_as(weight, x.dtype)
        if weight.shape != x.shape:  # torch's op takes a weight of the input's shape
            weight = weight.expand(x.shape)
    try:
        out = _nn.binary_cross_entropy(
            x, compute_as(target, x.dtype), weight, REDUCTION_ENUM[reduction]
        )
    except RuntimeError as e:  # torch's range check: a ValueError, as losskit's own
        if "between 0 and 1" in str(e):
            raise ValueError(str(e)) from None
        raise
    return restore(out, input.dtype)


_BCE = Backends("binary_cross_entropy", torch=_bce_torch)
binary_cross_entropy.backends = _BCE


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
    return _BCE_WITH_LOGITS(input, target, weight, reduction, pos_weight)


def _bce_with_logits_torch(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    reduction: str,
    pos_weight: torch.Tensor | None,
) -> torch.Tensor:
    x = compute_input(input)
    out = torch.binary_cross_entropy_with_logits(
        x,
        compute_as(target, x.dtype),
        compute_as(weight, x.dtype),
        compute_as(pos_weight, x.dtype),
        REDUCTION_ENUM[reduction],
    )
    return restore(out, input.dtype)


def _bce_with_logits_formula(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    reduction: str,
    pos_weight: torch.Tensor | None,
) -> torch.Tensor:
    # losskit's closed form (_binary_logits): full relative precision in the tails, where torch's
    # (1 - y) x + log(1 + e^-x) cancels; a forward-mode tangent of pos_weight.
    x, y = upcast(input), upcast(target)
    loss = binary_logit_loss(x, y, None if pos_weight is None else upcast(pos_weight))
    if weight is not None:
        loss = loss * upcast(weight)
    return reduce(loss, reduction).to(input.dtype)


def _bce_with_logits_torch_refuses(input, target, weight, reduction, pos_weight):
    if pos_weight is not None and _fwad.unpack_dual(pos_weight).tangent is not None:
        return "pos_weight carries a forward-mode tangent (torch's op refuses one)"
    return None


_BCE_WITH_LOGITS = Backends(
    "binary_cross_entropy_with_logits",
    torch=_bce_with_logits_torch,
    formula=_bce_with_logits_formula,
    kernel=bce_with_logits_kernel,
    refuses={"torch": _bce_with_logits_torch_refuses, "kernel": bce_with_logits_refuses},
)
binary_cross_entropy_with_logits.backends = _BCE_WITH_LOGITS


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
    return _MULTILABEL_SOFT_MARGIN(input, target, weight, reduction)


def _multilabel_soft_margin_torch(
    input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, reduction: str
) -> torch.Tensor:
    # torch's own is this composition in Python (there is no native op); called directly.
    x = compute_input(input)
    out = F.multilabel_soft_margin_loss(
        x, compute_as(target, x.dtype), weight=compute_as(weight, x.dtype), reduction=reduction
    )
    return restore(out, input.dtype)


_MULTILABEL_SOFT_MARGIN = Backends(
    "multilabel_soft_margin_loss", torch=_multilabel_soft_margin_torch
)
multilabel_soft_margin_loss.backends = _MULTILABEL_SOFT_MARGIN
