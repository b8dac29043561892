"""Module forms of the GAN losses (thin wrappers; the functional forms are the primary API)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import gan as F
from .._checks import check_bool, check_number, check_range
from ._base import Loss

__all__ = [
    "GradientPenalty",
    "HingeDiscriminatorLoss",
    "HingeGeneratorLoss",
    "LSGANDiscriminatorLoss",
    "LSGANGeneratorLoss",
    "LossSensitiveCriticLoss",
    "LossSensitiveGeneratorLoss",
    "MinimaxDiscriminatorLoss",
    "MinimaxGeneratorLoss",
    "WassersteinCriticLoss",
    "WassersteinGeneratorLoss",
]


class _TwoBatchLoss(Loss):
    # Real and fake batches may differ in size: only "mean" and "sum" (see losskit.gan).
    reductions = F.PAIRED_REDUCTIONS


class MinimaxDiscriminatorLoss(_TwoBatchLoss):
    """Module form of :func:`losskit.gan.minimax_discriminator_loss`."""

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.minimax_discriminator_loss(real_logits, fake_logits, self.reduction)


class MinimaxGeneratorLoss(Loss):
    """Module form of :func:`losskit.gan.minimax_generator_loss`."""

    def __init__(self, non_saturating: bool = True, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.non_saturating = check_bool("non_saturating", non_saturating)

    def forward(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.minimax_generator_loss(fake_logits, self.non_saturating, self.reduction)

    def extra_repr(self) -> str:
        return f"non_saturating={self.non_saturating}, {super().extra_repr()}"


class WassersteinCriticLoss(_TwoBatchLoss):
    """Module form of :func:`losskit.gan.wasserstein_critic_loss`."""

    def forward(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        return F.wasserstein_critic_loss(real_scores, fake_scores, self.reduction)


class WassersteinGeneratorLoss(Loss):
    """Module form of :func:`losskit.gan.wasserstein_generator_loss`."""

    def forward(self, fake_scores: torch.Tensor) -> torch.Tensor:
        return F.wasserstein_generator_loss(fake_scores, self.reduction)


class GradientPenalty(Loss):
    """Module form of :func:`losskit.gan.gradient_penalty`; ``forward(critic, real, fake)``."""

    def __init__(
        self, weight: float = 10.0, target_norm: float = 1.0, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        self.weight = check_range("weight", weight, 0.0)
        self.target_norm = check_range("target_norm", target_norm, 0.0)

    def forward(
        self,
        critic: Callable[[torch.Tensor], torch.Tensor],
        real: torch.Tensor,
        fake: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return F.gradient_penalty(
            critic, real, fake, self.weight, self.target_norm, generator, self.reduction
        )

    def extra_repr(self) -> str:
        return f"weight={self.weight}, target_norm={self.target_norm}, {super().extra_repr()}"


class LSGANDiscriminatorLoss(_TwoBatchLoss):
    """Module form of :func:`losskit.gan.lsgan_discriminator_loss`."""

    def __init__(self, a: float = 0.0, b: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.a = check_number("a", a)
        self.b = check_number("b", b)

    def forward(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        return F.lsgan_discriminator_loss(real_scores, fake_scores, self.a, self.b, self.reduction)

    def extra_repr(self) -> str:
        return f"a={self.a}, b={self.b}, {super().extra_repr()}"


class LSGANGeneratorLoss(Loss):
    """Module form of :func:`losskit.gan.lsgan_generator_loss`."""

    def __init__(self, c: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.c = check_number("c", c)

    def forward(self, fake_scores: torch.Tensor) -> torch.Tensor:
        return F.lsgan_generator_loss(fake_scores, self.c, self.reduction)

    def extra_repr(self) -> str:
        return f"c={self.c}, {super().extra_repr()}"


class HingeDiscriminatorLoss(_TwoBatchLoss):
    """Module form of :func:`losskit.gan.hinge_discriminator_loss`."""

    def forward(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
        return F.hinge_discriminator_loss(real_scores, fake_scores, self.reduction)


class HingeGeneratorLoss(Loss):
    """Module form of :func:`losskit.gan.hinge_generator_loss`."""

    def forward(self, fake_scores: torch.Tensor) -> torch.Tensor:
        return F.hinge_generator_loss(fake_scores, self.reduction)


class LossSensitiveCriticLoss(Loss):
    """Module form of :func:`losskit.gan.loss_sensitive_critic_loss`; ``lam`` checked here."""

    def __init__(self, lam: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.lam = check_range("lam", lam, 0.0)

    def forward(
        self,
        real_losses: torch.Tensor,
        fake_losses: torch.Tensor,
        margin: torch.Tensor | float,
    ) -> torch.Tensor:
        return F.loss_sensitive_critic_loss(
            real_losses, fake_losses, margin, self.lam, self.reduction
        )

    def extra_repr(self) -> str:
        return f"lam={self.lam}, {super().extra_repr()}"


class LossSensitiveGeneratorLoss(Loss):
    """Module form of :func:`losskit.gan.loss_sensitive_generator_loss`."""

    def forward(self, fake_losses: torch.Tensor) -> torch.Tensor:
        return F.loss_sensitive_generator_loss(fake_losses, self.reduction)
