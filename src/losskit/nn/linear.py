"""Module forms of the language-model head losses."""

from __future__ import annotations

import torch
from torch import nn

from .. import linear as F
from .._checks import check_class_weight, check_floating, check_int, check_range
from ._base import Loss, WeightedLoss

__all__ = ["CrossEntropyWithZLoss", "LinearCrossEntropyLoss"]


class LinearCrossEntropyLoss(Loss):
    """Module form of :func:`losskit.linear_cross_entropy`; owns the projection, like torch's.

    ``self.linear`` is an ``nn.Linear(in_features, num_classes, bias)``; ``forward(input,
    target)`` computes ``linear_cross_entropy(input, self.linear.weight, target,
    linear_bias=self.linear.bias, ...)`` in chunks of ``chunk_size`` rows. ``weight`` is a
    buffer. Mirrors :class:`torch.nn.LinearCrossEntropyLoss` (torch >= 2.13) without
    ``out_features`` and with ``chunk_size`` in place of ``options``.
    """

    weight: torch.Tensor | None

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        reduction: str = "mean",
        weight: torch.Tensor | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(reduction)
        in_features = check_int("in_features", in_features)
        num_classes = check_int("num_classes", num_classes)
        if in_features < 1 or num_classes < 1:
            raise ValueError(
                f"in_features and num_classes must be >= 1, got {in_features} and {num_classes}"
            )
        if weight is not None:
            check_floating("weight", weight)
            check_class_weight(weight, num_classes, weight)
        self.register_buffer("weight", weight)
        self.ignore_index = check_int("ignore_index", ignore_index)
        self.label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0)
        self.chunk_size = F.check_chunk_size(chunk_size)
        self.num_classes = num_classes
        self.linear = nn.Linear(in_features, num_classes, bias=bias, device=device, dtype=dtype)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.linear_cross_entropy(
            input,
            self.linear.weight,
            target,
            linear_bias=self.linear.bias,
            weight=self.weight,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, ignore_index={self.ignore_index}, "
            f"label_smoothing={self.label_smoothing}, chunk_size={self.chunk_size}"
        )


class CrossEntropyWithZLoss(WeightedLoss):
    """Module form of :func:`losskit.cross_entropy_with_z_loss` (returns the total loss)."""

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        lse_square_scale: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        super().__init__(weight, reduction)
        self.ignore_index = check_int("ignore_index", ignore_index)
        self.label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0)
        self.lse_square_scale = F.check_lse_square_scale(lse_square_scale)
        self.softcap = F.check_softcap(softcap)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy_with_z_loss(
            input,
            target,
            self.weight,
            self.ignore_index,
            self.reduction,
            self.label_smoothing,
            lse_square_scale=self.lse_square_scale,
            softcap=self.softcap,
        )
