"""Module forms of the ranking and margin losses (torch's constructor arguments, validated early)."""

from __future__ import annotations

import torch

from .. import ranking as F
from .._checks import check_bool, check_number
from ..ranking import DistanceFn, check_multi_margin_p, check_positive_margin
from ._base import Loss, WeightedLoss

__all__ = [
    "CosineEmbeddingLoss",
    "HingeEmbeddingLoss",
    "MarginRankingLoss",
    "MultiLabelMarginLoss",
    "MultiMarginLoss",
    "SoftMarginLoss",
    "TripletMarginLoss",
    "TripletMarginWithDistanceLoss",
]


class MarginRankingLoss(Loss):
    """Module form of :func:`losskit.margin_ranking_loss`."""

    def __init__(self, margin: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.margin = check_number("margin", margin)

    def forward(
        self, input1: torch.Tensor, input2: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        return F.margin_ranking_loss(input1, input2, target, self.margin, self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, {super().extra_repr()}"


class HingeEmbeddingLoss(Loss):
    """Module form of :func:`losskit.hinge_embedding_loss`."""

    def __init__(self, margin: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.margin = check_number("margin", margin)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.hinge_embedding_loss(input, target, self.margin, self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, {super().extra_repr()}"


class SoftMarginLoss(Loss):
    """Module form of :func:`losskit.soft_margin_loss`."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.soft_margin_loss(input, target, self.reduction)


class MultiMarginLoss(WeightedLoss):
    """Module form of :func:`losskit.multi_margin_loss`; ``weight`` is a buffer."""

    def __init__(
        self,
        p: int = 1,
        margin: float = 1.0,
        weight: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight, reduction)
        self.p = check_multi_margin_p(p)
        self.margin = check_number("margin", margin)
        if weight is not None and weight.dim() != 1:
            raise ValueError(
                "weight must be a 1-D tensor with one entry per class, "
                f"got shape {tuple(weight.shape)}"
            )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.multi_margin_loss(input, target, self.p, self.margin, self.weight, self.reduction)

    def extra_repr(self) -> str:
        return f"p={self.p}, margin={self.margin}, {super().extra_repr()}"


class MultiLabelMarginLoss(Loss):
    """Module form of :func:`losskit.multilabel_margin_loss`."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.multilabel_margin_loss(input, target, self.reduction)


class CosineEmbeddingLoss(Loss):
    """Module form of :func:`losskit.cosine_embedding_loss`."""

    def __init__(self, margin: float = 0.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.margin = check_number("margin", margin)

    def forward(
        self, input1: torch.Tensor, input2: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        return F.cosine_embedding_loss(input1, input2, target, self.margin, self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, {super().extra_repr()}"


class TripletMarginLoss(Loss):
    """Module form of :func:`losskit.triplet_margin_loss` (``margin > 0`` checked here)."""

    def __init__(
        self,
        margin: float = 1.0,
        p: float = 2.0,
        eps: float = 1e-6,
        swap: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.margin = check_positive_margin(margin)
        self.p = check_number("p", p)
        self.eps = check_number("eps", eps)
        self.swap = check_bool("swap", swap)

    def forward(
        self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
    ) -> torch.Tensor:
        return F.triplet_margin_loss(
            anchor, positive, negative, self.margin, self.p, self.eps, self.swap, self.reduction
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, p={self.p}, eps={self.eps}, swap={self.swap}, "
            f"{super().extra_repr()}"
        )


class TripletMarginWithDistanceLoss(Loss):
    """Module form of :func:`losskit.triplet_margin_with_distance_loss`.

    ``distance_function`` defaults to :func:`losskit.pairwise_distance`; an ``nn.Module`` distance
    is registered as a submodule (so its parameters move with ``.to()``).
    """

    def __init__(
        self,
        *,
        distance_function: DistanceFn | None = None,
        margin: float = 1.0,
        swap: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        if distance_function is not None and not callable(distance_function):
            raise TypeError(
                "distance_function must be callable or None, "
                f"got {type(distance_function).__name__}"
            )
        self.margin = check_positive_margin(margin)
        self.swap = check_bool("swap", swap)
        self.distance_function: DistanceFn = (
            distance_function if distance_function is not None else F.pairwise_distance
        )

    def forward(
        self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
    ) -> torch.Tensor:
        return F.triplet_margin_with_distance_loss(
            anchor,
            positive,
            negative,
            distance_function=self.distance_function,
            margin=self.margin,
            swap=self.swap,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"margin={self.margin}, swap={self.swap}, {super().extra_repr()}"
