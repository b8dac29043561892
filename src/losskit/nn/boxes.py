"""Module forms of the box regression losses: ``forward(pred, target)`` on ``(..., 4)`` boxes."""

from __future__ import annotations

import torch

from .. import boxes as F
from .._checks import check_bool, check_range
from ._base import Loss

__all__ = [
    "AlphaIoULoss",
    "CIoULoss",
    "DIoULoss",
    "EIoULoss",
    "FocalEIoULoss",
    "GIoULoss",
    "IoULoss",
    "SIoULoss",
    "WIoULoss",
]


class _BoxLoss(Loss):
    """A box loss with ``eps`` (checked here) and ``reduction``."""

    def __init__(self, eps: float = 1e-7, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.eps = F.check_eps(eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, {super().extra_repr()}"


class IoULoss(_BoxLoss):
    """Module form of :func:`losskit.boxes.iou_loss`."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.iou_loss(pred, target, self.eps, self.reduction)


class GIoULoss(_BoxLoss):
    """Module form of :func:`losskit.boxes.giou_loss`."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.giou_loss(pred, target, self.eps, self.reduction)


class DIoULoss(_BoxLoss):
    """Module form of :func:`losskit.boxes.diou_loss`."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.diou_loss(pred, target, self.eps, self.reduction)


class CIoULoss(_BoxLoss):
    """Module form of :func:`losskit.boxes.ciou_loss`."""

    def __init__(
        self, eps: float = 1e-7, reduction: str = "mean", detach_alpha: bool = True
    ) -> None:
        super().__init__(eps, reduction)
        self.detach_alpha = check_bool("detach_alpha", detach_alpha)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.ciou_loss(pred, target, self.eps, self.reduction, self.detach_alpha)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, detach_alpha={self.detach_alpha}"


class EIoULoss(_BoxLoss):
    """Module form of :func:`losskit.boxes.eiou_loss`."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.eiou_loss(pred, target, self.eps, self.reduction)


class FocalEIoULoss(_BoxLoss):
    """Module form of :func:`losskit.boxes.focal_eiou_loss`."""

    def __init__(self, eps: float = 1e-7, reduction: str = "mean", gamma: float = 0.5) -> None:
        super().__init__(eps, reduction)
        self.gamma = check_range("gamma", gamma, 0.0)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.focal_eiou_loss(pred, target, self.eps, self.reduction, self.gamma)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma}"


class AlphaIoULoss(_BoxLoss):
    """Module form of :func:`losskit.boxes.alpha_iou_loss`."""

    def __init__(self, eps: float = 1e-7, reduction: str = "mean", alpha: float = 3.0) -> None:
        super().__init__(eps, reduction)
        self.alpha = check_range("alpha", alpha, 0.0, low_inclusive=False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.alpha_iou_loss(pred, target, self.eps, self.reduction, self.alpha)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha}"


class SIoULoss(_BoxLoss):
    """Module form of :func:`losskit.boxes.siou_loss`."""

    def __init__(self, eps: float = 1e-7, reduction: str = "mean", theta: float = 4.0) -> None:
        super().__init__(eps, reduction)
        self.theta = check_range("theta", theta, 0.0, low_inclusive=False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.siou_loss(pred, target, self.eps, self.reduction, self.theta)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, theta={self.theta}"


class WIoULoss(_BoxLoss):
    """Module form of :func:`losskit.boxes.wiou_loss` (Wise-IoU v1)."""

    def __init__(
        self, eps: float = 1e-7, reduction: str = "mean", detach_enclosing: bool = True
    ) -> None:
        super().__init__(eps, reduction)
        self.detach_enclosing = check_bool("detach_enclosing", detach_enclosing)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.wiou_loss(pred, target, self.eps, self.reduction, self.detach_enclosing)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, detach_enclosing={self.detach_enclosing}"
