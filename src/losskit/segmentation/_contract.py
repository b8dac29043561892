"""The one contract every segmentation loss shares: shapes, activation, ignored pixels, classes.

Checks (run by each functional before its :class:`~losskit._dispatch.Backends` record):

* ``input``: floating logits (or probabilities with ``activation=None``), ``(N, C, d1, ..., dK)``,
  ``K >= 1``.
* ``target``: integer class indices ``(N, d1, ..., dK)`` (each in ``[0, C)`` or ``ignore_index``),
  or floating/bool probabilities (one-hot or soft) of ``input``'s shape. With a single channel and
  ``activation="sigmoid"`` an index target holds binary labels ``{0, 1}`` (1 = the channel's class).
* ``weight``: ``None`` or one non-negative entry per *input* channel, ``(C,)``, whatever
  ``include_background`` says (its entry 0 is dropped with the background channel).

Computation (the formula backends, validated arguments only), in this order:

1. upcast half inputs to float32 (every sum below accumulates in float32);
2. the activation over the full channel dimension (softmax or sigmoid), *before* any masking;
3. the target as per-class probabilities ``t`` (index targets compared with ``arange(C)``, never
   through a one-hot of an ignored value);
4. ignored pixels (``target == ignore_index``) removed from ``p`` and ``t`` with ``torch.where``, so
   neither their value nor their gradient reaches any sum;
5. the background channel 0 dropped when ``include_background=False``;
6. per-class sums over the spatial dimensions (and the batch with ``batch_dice=True``).
"""

from __future__ import annotations

import torch

from .._checks import (
    any_true,
    check_bool,
    check_class_indices,
    check_floating,
    check_int,
    check_range,
    check_same_device,
    check_same_shape,
    check_tensor,
    check_values_in,
    value_checks_enabled,
)
from .._precision import upcast
from .._reduction import check_reduction

ACTIVATIONS = ("softmax", "sigmoid", None)

__all__ = ["ACTIVATIONS", "Seg", "check_activation", "check_seg", "class_probs", "reduce_classes"]


def check_activation(activation: object, allowed: tuple = ACTIVATIONS) -> str | None:
    if activation not in allowed or not (activation is None or isinstance(activation, str)):
        raise ValueError(f"activation must be one of {allowed}, got {activation!r}")
    return activation  # type: ignore[return-value]


def check_ignore_index(ignore_index: object) -> int | None:
    return None if ignore_index is None else check_int("ignore_index", ignore_index)


def check_smooth_eps(smooth: object, eps: object) -> tuple[float, float]:
    s = check_range("smooth", smooth, 0.0, finite=True)
    e = check_range("eps", eps, 0.0, finite=True)
    return s, e


def check_weight_tensor(weight: object) -> torch.Tensor | None:
    """The Module-constructor part of the weight check: ``None`` or a 1-D floating tensor."""
    if weight is None:
        return None
    w = check_floating("weight", weight)
    if w.dim() != 1:
        raise ValueError(
            f"weight must be a 1-D tensor with one entry per input channel, got shape "
            f"{tuple(w.shape)}"
        )
    return w


class Seg:
    """The validated call: what the formula backends receive (plain attributes, no logic)."""

    __slots__ = ("activation", "ignore_index", "include_background", "index_target", "num_classes")

    def __init__(
        self,
        activation: str | None,
        ignore_index: int | None,
        include_background: bool,
        index_target: bool,
        num_classes: int,
    ) -> None:
        self.activation = activation
        self.ignore_index = ignore_index
        self.include_background = include_background
        self.index_target = index_target
        self.num_classes = num_classes


def check_seg(
    input: object,
    target: object,
    *,
    activation: object,
    ignore_index: object,
    include_background: object,
    weight: object,
    reduction: object,
    reductions: tuple[str, ...] = ("none", "mean", "sum"),
    index_targets: bool = True,
    target_name: str = "target",
    probability_target: bool = True,
    index_range_in_formula: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Seg, str]:
    """Validate the shared arguments; return ``input, target, weight, seg, reduction``."""
    input = check_floating("input", input)
    target = check_tensor(target_name, target)
    reduction = check_reduction(reduction, reductions)
    activation = check_activation(activation)
    ignore_index = check_ignore_index(ignore_index)
    include_background = check_bool("include_background", include_background)
    weight = check_weight_tensor(weight)
    if input.dim() < 3:
        raise ValueError(
            "input must be (N, C, d1, ..., dK) logits with at least one spatial dimension, got "
            f"shape {tuple(input.shape)}"
        )
    n, c = input.shape[0], input.shape[1]
    if c == 0:
        raise ValueError(f"input must have at least one channel, got shape {tuple(input.shape)}")
    if activation == "softmax" and c == 1:
        raise ValueError(
            "activation='softmax' over a single channel is constant 1; use activation='sigmoid' "
            f"for a binary (one-channel) input, got shape {tuple(input.shape)}"
        )
    if not include_background and c == 1:
        raise ValueError(
            "include_background=False drops channel 0, which leaves no class for a one-channel "
            f"input of shape {tuple(input.shape)}"
        )
    check_same_device(target_name, target, input)
    if target.is_complex():
        raise TypeError(f"{target_name} must be class indices or probabilities, got {target.dtype}")
    index_target = not (target.is_floating_point() or target.dtype == torch.bool)
    if index_target or (not probability_target and not target.is_floating_point()):
        if not index_targets:
            raise TypeError(
                f"{target_name} must be a floating tensor of input's shape, got dtype "
                f"{target.dtype}"
            )
        expected = (n, *input.shape[2:])
        if tuple(target.shape) != expected:
            raise ValueError(
                f"Expected target size {expected} (class indices) or {tuple(input.shape)} "
                f"(probabilities) for input of shape {tuple(input.shape)}, got "
                f"{tuple(target.shape)}"
            )
        # One channel: binary labels. The overlap losses check the range of a multi-class target
        # from the class counts they compute anyway (see ``check_counts``): no extra pass.
        if c == 1 or not index_range_in_formula:
            check_indices(target, 2 if c == 1 else c, ignore_index)
    else:
        check_same_shape("input", input, target_name, target)
        if ignore_index is not None:
            raise ValueError(
                "ignore_index applies to class-index targets; a probability target has no index "
                f"to ignore, got ignore_index={ignore_index}"
            )
        if probability_target and target.dtype != torch.bool:
            check_values_in(target_name, target, 0.0, 1.0)
    if weight is not None:
        if weight.numel() != c:
            raise ValueError(
                f"weight must have one entry per input channel ({c}, background included "
                f"whatever include_background says), got shape {tuple(weight.shape)}"
            )
        check_same_device("weight", weight, input)
        check_values_in("weight", weight, 0.0, float("inf"))
    if activation is None and value_checks_enabled():
        check_values_in("input (probabilities, activation=None)", input, 0.0, 1.0)
    seg = Seg(activation, ignore_index, include_background, index_target, c)
    return input, target, weight, seg, reduction


def check_indices(target: torch.Tensor, num_classes: int, ignore_index: int | None) -> None:
    """``IndexError`` for a kept index outside ``[0, num_classes)``: one ``aminmax`` pass (two with
    an ``ignore_index``) and one read; the slower scan only runs to name the offending value."""
    if not value_checks_enabled() or target.numel() == 0:
        return
    kept = target if ignore_index is None else torch.where(target == ignore_index, 0, target)
    low, high = torch.aminmax(kept)
    if any_true((low < 0) | (high >= num_classes)):
        check_class_indices(target, num_classes, ignore_index)


def check_counts(
    matched: torch.Tensor, kept: torch.Tensor | int, target: torch.Tensor, seg: Seg
) -> None:
    """The range check of an index target from the formula's own counts: every kept pixel with an
    index in ``[0, C)`` matches exactly one class, so ``matched == kept`` unless one is out of
    range (then the scan of :func:`check_class_indices` names it). Value checks only, in eager."""
    if not value_checks_enabled():
        return
    if any_true(matched != kept):
        check_class_indices(target, seg.num_classes, seg.ignore_index)


# ---------------------------------------------------------------- the formula side


def activate(x: torch.Tensor, activation: str | None) -> torch.Tensor:
    if activation == "softmax":
        return torch.softmax(x, dim=1)
    if activation == "sigmoid":
        return torch.sigmoid(x)
    return x


def target_probs(
    target: torch.Tensor, seg: Seg, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(t, keep)``: per-class target probabilities ``(N, C, *spatial)`` and the kept-pixel mask
    ``(N, 1, *spatial)`` (``None`` when nothing can be ignored)."""
    if not seg.index_target:
        return target.detach().to(dtype), None
    keep = None if seg.ignore_index is None else (target != seg.ignore_index).unsqueeze(1)
    y = target.unsqueeze(1)
    if seg.num_classes == 1:
        t = y == 1
    else:
        classes = torch.arange(seg.num_classes, device=target.device)
        t = y == classes.view(1, -1, *([1] * (target.dim() - 1)))
    if keep is not None:
        t = t & keep
    return t.to(dtype), keep


def class_probs(
    input: torch.Tensor, target: torch.Tensor, seg: Seg
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(p, t, keep)`` after steps 1-5 of the module docstring, spatial dims flattened:
    ``p, t`` of shape ``(N, C', S)``, ``keep`` ``(N, 1, S)`` or ``None``."""
    x = upcast(input)
    p = activate(x, seg.activation)
    t, keep = target_probs(target, seg, p.dtype)
    n, c = p.shape[0], p.shape[1]
    p, t = p.reshape(n, c, -1), t.reshape(n, c, -1)
    if keep is not None:
        keep = keep.reshape(n, 1, -1)
        # where(), not a product: an ignored pixel's p (and its gradient) is exactly 0.
        p = torch.where(keep, p, p.new_zeros(()))
    if not seg.include_background:
        p, t = p[:, 1:], t[:, 1:]
    return p, t, keep


def sum_dims(batch_dice: bool) -> tuple[int, ...]:
    return (0, 2) if batch_dice else (2,)


def kept_weight(weight: torch.Tensor | None, seg: Seg, dtype: torch.dtype) -> torch.Tensor | None:
    if weight is None:
        return None
    w = weight.to(dtype)
    return w if seg.include_background else w[1:]


def reduce_classes(loss: torch.Tensor, weight: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Per-class losses ``(N, C')`` or ``(C',)`` to the reduction.

    ``none``: ``w_c ℓ_{n,c}``; ``sum``: their sum; ``mean``: ``Σ w_c ℓ_{n,c} / (N' Σ_c w_c)`` (the
    weighted mean over classes, then the mean over images; ``N' = 1`` with ``batch_dice``).
    """
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if weight is None:
        return loss.mean()
    rows = loss.shape[0] if loss.dim() == 2 else 1
    return loss.sum() / (weight.sum() * rows)
