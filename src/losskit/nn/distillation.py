"""Module forms of the distillation losses."""

from __future__ import annotations

import torch

from .. import distillation as F
from .._reduction import REDUCTIONS_WITH_BATCHMEAN
from ._base import Loss

__all__ = ["DistillationKLDivLoss", "JSDLoss"]


class DistillationKLDivLoss(Loss):
    """Module form of :func:`losskit.distillation_kl_div`; ``forward(student_logits, teacher_logits)``."""

    reductions = REDUCTIONS_WITH_BATCHMEAN

    def __init__(self, temperature: float = 1.0, reduction: str = "batchmean") -> None:
        super().__init__(reduction)
        self.temperature = F.check_temperature(temperature)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return F.distillation_kl_div(
            student_logits, teacher_logits, self.temperature, self.reduction
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={self.temperature}"


class JSDLoss(Loss):
    """Module form of :func:`losskit.jsd`; ``forward(student_logits, teacher_logits)``."""

    reductions = REDUCTIONS_WITH_BATCHMEAN

    def __init__(
        self, beta: float = 0.5, temperature: float = 1.0, reduction: str = "batchmean"
    ) -> None:
        super().__init__(reduction)
        self.beta = F.check_beta(beta)
        self.temperature = F.check_temperature(temperature)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return F.jsd(student_logits, teacher_logits, self.beta, self.temperature, self.reduction)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}, temperature={self.temperature}"
