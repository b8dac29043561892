"""Module forms of the classification losses."""

from __future__ import annotations

import torch

from .. import classification as F
from .._checks import check_floating, check_int, check_range
from ._base import WeightedLoss

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "MultiLabelSoftMarginLoss",
    "NLLLoss",
]


class CrossEntropyLoss(WeightedLoss):
    """Module form of :func:`losskit.cross_entropy` (same arguments, validated here)."""

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, reduction)
        self.ignore_index = check_int("ignore_index", ignore_index)
        self.label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing
        )


class NLLLoss(WeightedLoss):
    """Module form of :func:`losskit.nll_loss`."""

    def __init__(
        self, weight: torch.Tensor | None = None, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__(weight, reduction)
        self.ignore_index = check_int("ignore_index", ignore_index)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class BCELoss(WeightedLoss):
    """Module form of :func:`losskit.binary_cross_entropy`."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(WeightedLoss):
    """Module form of :func:`losskit.binary_cross_entropy_with_logits`; ``pos_weight`` is a buffer."""

    pos_weight: torch.Tensor | None

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        reduction: str = "mean",
        pos_weight: torch.Tensor | None = None,
    ) -> None:
        super().__init__(weight, reduction)
        if pos_weight is not None:
            check_floating("pos_weight", pos_weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(
            input, target, self.weight, self.reduction, self.pos_weight
        )


class MultiLabelSoftMarginLoss(WeightedLoss):
    """Module form of :func:`losskit.multilabel_soft_margin_loss`."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.multilabel_soft_margin_loss(input, target, self.weight, self.reduction)
