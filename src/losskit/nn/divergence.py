"""Module forms of the divergences."""

from __future__ import annotations

import torch

from .. import divergence as F
from .._checks import check_bool
from .._reduction import REDUCTIONS_WITH_BATCHMEAN
from ._base import Loss

__all__ = ["KLDivLoss"]


class KLDivLoss(Loss):
    """Module form of :func:`losskit.kl_div`; accepts ``reduction="batchmean"``."""

    reductions = REDUCTIONS_WITH_BATCHMEAN

    def __init__(self, reduction: str = "mean", log_target: bool = False) -> None:
        super().__init__(reduction)
        self.log_target = check_bool("log_target", log_target)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.kl_div(input, target, self.reduction, self.log_target)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, log_target={self.log_target}"
