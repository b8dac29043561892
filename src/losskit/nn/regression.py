"""Module forms of the regression losses."""

from __future__ import annotations

import torch

from .. import regression as F
from .._checks import check_bool, check_range
from ._base import Loss, WeightedLoss

__all__ = [
    "GaussianNLLLoss",
    "HuberLoss",
    "L1Loss",
    "MSELoss",
    "PoissonNLLLoss",
    "SmoothL1Loss",
]


class _ElementwiseWeighted(WeightedLoss):
    """A loss with an optional per-element ``weight`` of the input's shape.

    The weight given to the constructor is a buffer (it moves with ``.to()`` and is saved); as a
    per-element weight only fits inputs of one shape, ``forward`` also takes a ``weight`` that,
    when given, replaces it for that call.
    """

    def __init__(self, reduction: str = "mean", weight: torch.Tensor | None = None) -> None:
        super().__init__(weight, reduction)

    def _weight(self, weight: torch.Tensor | None) -> torch.Tensor | None:
        return self.weight if weight is None else weight


class L1Loss(_ElementwiseWeighted):
    """Module form of :func:`losskit.l1_loss`."""

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        return F.l1_loss(input, target, self.reduction, self._weight(weight))


class MSELoss(_ElementwiseWeighted):
    """Module form of :func:`losskit.mse_loss`."""

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        return F.mse_loss(input, target, self.reduction, self._weight(weight))


class SmoothL1Loss(Loss):
    """Module form of :func:`losskit.smooth_l1_loss`; ``beta >= 0`` is checked here."""

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        self.beta = check_range("beta", beta, 0.0)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(input, target, self.reduction, self.beta)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}"


class HuberLoss(_ElementwiseWeighted):
    """Module form of :func:`losskit.huber_loss`; ``delta > 0`` is checked here."""

    def __init__(
        self, reduction: str = "mean", delta: float = 1.0, weight: torch.Tensor | None = None
    ) -> None:
        super().__init__(reduction, weight)
        self.delta = check_range("delta", delta, 0.0, low_inclusive=False)

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        return F.huber_loss(input, target, self.reduction, self.delta, self._weight(weight))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, delta={self.delta}"


class PoissonNLLLoss(Loss):
    """Module form of :func:`losskit.poisson_nll_loss`."""

    def __init__(
        self,
        log_input: bool = True,
        full: bool = False,
        eps: float = 1e-8,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.log_input = check_bool("log_input", log_input)
        self.full = check_bool("full", full)
        self.eps = check_range("eps", eps, 0.0)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.poisson_nll_loss(
            input, target, self.log_input, self.full, self.eps, self.reduction
        )

    def extra_repr(self) -> str:
        return f"log_input={self.log_input}, full={self.full}, eps={self.eps}, " + (
            super().extra_repr()
        )


class GaussianNLLLoss(Loss):
    """Module form of :func:`losskit.gaussian_nll_loss`; ``var`` is an argument of ``forward``."""

    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.full = check_bool("full", full)
        self.eps = check_range("eps", eps, 0.0)

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, var: torch.Tensor | float
    ) -> torch.Tensor:
        return F.gaussian_nll_loss(input, target, var, self.full, self.eps, self.reduction)

    def extra_repr(self) -> str:
        return f"full={self.full}, eps={self.eps}, {super().extra_repr()}"
