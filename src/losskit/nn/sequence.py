"""Module form of the sequence losses (CTC)."""

from __future__ import annotations

import torch

from .. import sequence as F
from .._checks import check_bool, check_int
from ._base import Loss

__all__ = ["CTCLoss"]


class CTCLoss(Loss):
    """Module form of :func:`losskit.ctc_loss`.

    ``blank`` must be a non-negative int here; that it is below the number of classes ``C`` is
    checked at the call, when ``C`` is known.
    """

    def __init__(
        self,
        blank: int = 0,
        reduction: str = "mean",
        zero_infinity: bool = False,
        *,
        exact_grad: bool = False,
    ):
        super().__init__(reduction)
        self.blank = check_int("blank", blank)
        if self.blank < 0:
            raise ValueError(f"blank must be in label range [0, C), got blank={blank}")
        self.zero_infinity = check_bool("zero_infinity", zero_infinity)
        self.exact_grad = check_bool("exact_grad", exact_grad)

    def forward(
        self,
        log_probs: torch.Tensor,
        targets: torch.Tensor,
        input_lengths: F.Lengths,
        target_lengths: F.Lengths,
    ) -> torch.Tensor:
        return F.ctc_loss(
            log_probs,
            targets,
            input_lengths,
            target_lengths,
            self.blank,
            self.reduction,
            self.zero_infinity,
            exact_grad=self.exact_grad,
        )

    def extra_repr(self) -> str:
        return (
            f"blank={self.blank}, reduction={self.reduction!r}, zero_infinity={self.zero_infinity}"
            + (", exact_grad=True" if self.exact_grad else "")
        )
