"""Module forms of the focal losses."""

from __future__ import annotations

import torch

from .. import focal as F
from .._checks import check_int, check_optional_floating
from ._base import Loss

__all__ = ["SigmoidFocalLoss", "SoftmaxFocalLoss"]


class SigmoidFocalLoss(Loss):
    """Module form of :func:`losskit.sigmoid_focal_loss`; ``alpha``, ``gamma`` and
    ``ignore_index`` checked here, ``weight`` and ``pos_weight`` kept as buffers."""

    weight: torch.Tensor | None
    pos_weight: torch.Tensor | None

    def __init__(
        self,
        alpha: float = 0.25,
        gamma: float = 2.0,
        reduction: str = "mean",
        *,
        weight: torch.Tensor | None = None,
        pos_weight: torch.Tensor | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(reduction)
        self.alpha = F.check_binary_alpha(alpha)
        self.gamma = F.check_gamma(gamma)
        self.register_buffer("weight", check_optional_floating("weight", weight))
        self.register_buffer("pos_weight", check_optional_floating("pos_weight", pos_weight))
        self.ignore_index = (
            None if ignore_index is None else check_int("ignore_index", ignore_index)
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.sigmoid_focal_loss(
            input,
            target,
            self.alpha,
            self.gamma,
            self.reduction,
            weight=self.weight,
            pos_weight=self.pos_weight,
            ignore_index=self.ignore_index,
        )

    def extra_repr(self) -> str:
        ignore = "" if self.ignore_index is None else f", ignore_index={self.ignore_index}"
        return f"alpha={self.alpha}, gamma={self.gamma}{ignore}, {super().extra_repr()}"


class SoftmaxFocalLoss(Loss):
    """Module form of :func:`losskit.softmax_focal_loss`; ``alpha`` (C,) is a buffer."""

    alpha: torch.Tensor | None

    def __init__(
        self,
        alpha: torch.Tensor | None = None,
        gamma: float = 2.0,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        alpha = F.check_class_alpha(alpha)
        if alpha is not None and alpha.dim() != 1:
            raise ValueError(
                f"alpha must be a 1-D tensor with one weight per class, got shape {tuple(alpha.shape)}"
            )
        self.register_buffer("alpha", alpha)
        self.gamma = F.check_gamma(gamma)
        self.ignore_index = check_int("ignore_index", ignore_index)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.softmax_focal_loss(
            input, target, self.alpha, self.gamma, self.ignore_index, self.reduction
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, ignore_index={self.ignore_index}, {super().extra_repr()}"
