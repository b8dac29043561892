"""Module forms of the detection losses: ``forward(input, target, weight=None, avg_factor=None)``,
mmdetection's layout (hyper-parameters and ``reduction`` checked in ``__init__``)."""

from __future__ import annotations

import torch

from .. import detection as F
from .._checks import check_bool, check_range
from ._base import Loss

__all__ = ["BalancedL1Loss", "DistributionFocalLoss", "QualityFocalLoss", "VarifocalLoss"]

_Target = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class QualityFocalLoss(Loss):
    """Module form of :func:`losskit.quality_focal_loss`."""

    def __init__(self, beta: float = 2.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.beta = check_range("beta", beta, 0.0, finite=True)

    def forward(
        self,
        input: torch.Tensor,
        target: _Target,
        weight: torch.Tensor | None = None,
        avg_factor: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        return F.quality_focal_loss(
            input, target, weight, avg_factor, beta=self.beta, reduction=self.reduction
        )

    def extra_repr(self) -> str:
        return f"beta={self.beta}, {super().extra_repr()}"


class DistributionFocalLoss(Loss):
    """Module form of :func:`losskit.distribution_focal_loss`."""

    def forward(
        self,
        input: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        return F.distribution_focal_loss(
            input, target, weight, avg_factor, reduction=self.reduction
        )


class VarifocalLoss(Loss):
    """Module form of :func:`losskit.varifocal_loss`."""

    def __init__(
        self,
        alpha: float = 0.75,
        gamma: float = 2.0,
        iou_weighted: bool = True,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.alpha = check_range("alpha", alpha, 0.0, finite=True)
        self.gamma = check_range("gamma", gamma, 0.0, finite=True)
        self.iou_weighted = check_bool("iou_weighted", iou_weighted)

    def forward(
        self,
        input: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        return F.varifocal_loss(
            input,
            target,
            weight,
            avg_factor,
            alpha=self.alpha,
            gamma=self.gamma,
            iou_weighted=self.iou_weighted,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, gamma={self.gamma}, iou_weighted={self.iou_weighted}, "
            f"{super().extra_repr()}"
        )


class BalancedL1Loss(Loss):
    """Module form of :func:`losskit.balanced_l1_loss`."""

    def __init__(
        self,
        alpha: float = 0.5,
        gamma: float = 1.5,
        beta: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.alpha = check_range("alpha", alpha, 0.0, low_inclusive=False, finite=True)
        self.gamma = check_range("gamma", gamma, 0.0, low_inclusive=False, finite=True)
        self.beta = check_range("beta", beta, 0.0, low_inclusive=False, finite=True)

    def forward(
        self,
        input: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | torch.Tensor | None = None,
    ) -> torch.Tensor:
        return F.balanced_l1_loss(
            input,
            target,
            weight,
            avg_factor,
            alpha=self.alpha,
            gamma=self.gamma,
            beta=self.beta,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, beta={self.beta}, {super().extra_repr()}"
