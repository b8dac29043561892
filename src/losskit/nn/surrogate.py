"""Module forms of the binary surrogate losses (labels in ``{-1, 1}``)."""

from __future__ import annotations

import torch

from .. import surrogate as F
from ._base import Loss

__all__ = ["ExponentialLoss", "HingeLoss", "LogisticLoss", "SquaredHingeLoss", "ZeroOneLoss"]


class HingeLoss(Loss):
    """Module form of :func:`losskit.hinge_loss`; ``margin`` is checked here."""

    def __init__(self, margin: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.margin = F.check_margin(margin)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.hinge_loss(input, target, self.margin, self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, {super().extra_repr()}"


class SquaredHingeLoss(HingeLoss):
    """Module form of :func:`losskit.squared_hinge_loss`."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.squared_hinge_loss(input, target, self.margin, self.reduction)


class ExponentialLoss(Loss):
    """Module form of :func:`losskit.exponential_loss`."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.exponential_loss(input, target, self.reduction)


class LogisticLoss(Loss):
    """Module form of :func:`losskit.logistic_loss`."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.logistic_loss(input, target, self.reduction)


class ZeroOneLoss(Loss):
    """Module form of :func:`losskit.zero_one_loss` (a metric: the output has no grad)."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.zero_one_loss(input, target, self.reduction)
