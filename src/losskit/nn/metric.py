"""Module forms of the metric-learning losses (:mod:`losskit.metric`).

``ArcFaceLoss`` and ``CosFaceLoss`` own the class centres as a learnable ``nn.Parameter`` of
shape ``(num_classes, embedding_dim)`` (normalised in the forward pass): put the criterion's
parameters in the optimizer next to the model's.
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_bool, check_int
from ..metric import margin_softmax as MS
from ..metric import pairs as PF
from ..metric import triplet as TF
from ..metric._common import (
    check_choice,
    check_finite,
    check_metric,
    check_nonnegative,
    check_positive,
)
from ._base import Loss

__all__ = ["ArcFaceLoss", "ContrastiveLoss", "CosFaceLoss", "MultiSimilarityLoss", "TripletLoss"]


class TripletLoss(Loss):
    """Module form of :func:`losskit.metric.triplet_loss`; ``forward(embeddings, labels)``."""

    def __init__(
        self,
        margin: float = 0.2,
        mining: str = "batch_hard",
        metric: str = "euclidean",
        p: float = 2.0,
        soft_margin: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.margin = check_nonnegative("margin", margin)
        self.mining = check_choice("mining", mining, TF.MININGS)
        self.metric, self.p = check_metric(metric, p)
        self.soft_margin = check_bool("soft_margin", soft_margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return TF.triplet_loss(
            embeddings,
            labels,
            self.margin,
            self.mining,
            self.metric,
            self.p,
            self.soft_margin,
            self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, mining={self.mining!r}, metric={self.metric!r}, "
            f"soft_margin={self.soft_margin}, {super().extra_repr()}"
        )


class ContrastiveLoss(Loss):
    """Module form of :func:`losskit.metric.contrastive_loss`."""

    def __init__(
        self,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        metric: str = "euclidean",
        p: float = 2.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.pos_margin = check_nonnegative("pos_margin", pos_margin)
        self.neg_margin = check_nonnegative("neg_margin", neg_margin)
        self.metric, self.p = check_metric(metric, p)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return PF.contrastive_loss(
            embeddings,
            labels,
            self.pos_margin,
            self.neg_margin,
            self.metric,
            self.p,
            self.reduction,
        )


class MultiSimilarityLoss(Loss):
    """Module form of :func:`losskit.metric.multi_similarity_loss`."""

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        epsilon: float = 0.1,
        mining: bool = True,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.alpha = check_positive("alpha", alpha)
        self.beta = check_positive("beta", beta)
        self.base = check_finite("base", base)
        self.epsilon = check_nonnegative("epsilon", epsilon)
        self.mining = check_bool("mining", mining)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return PF.multi_similarity_loss(
            embeddings,
            labels,
            self.alpha,
            self.beta,
            self.base,
            self.epsilon,
            self.mining,
            self.reduction,
        )


class _MarginSoftmaxLoss(Loss):
    """Shared parts of ArcFace/CosFace: the learnable ``(num_classes, embedding_dim)`` weight."""

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        scale: float,
        reduction: str,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__(reduction)
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        self.num_classes = _positive_int("num_classes", num_classes)
        self.scale = check_positive("scale", scale)
        self.weight = nn.Parameter(
            torch.empty(self.num_classes, self.embedding_dim, device=device, dtype=dtype)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Xavier-uniform, as the ArcFace authors' code; only the direction matters.
        nn.init.xavier_uniform_(self.weight)


class ArcFaceLoss(_MarginSoftmaxLoss):
    """ArcFace with learnable class centres; see :func:`losskit.metric.arcface_loss`.

    ``forward(embeddings (B, D), labels (B,))``; ``weight`` is an ``nn.Parameter`` of shape
    ``(num_classes, embedding_dim)``.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        scale: float = 64.0,
        margin: float = 0.5,
        easy_margin: bool = False,
        reduction: str = "mean",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(embedding_dim, num_classes, scale, reduction, device, dtype)
        self.margin = MS.check_angle("margin", margin)
        self.easy_margin = check_bool("easy_margin", easy_margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return MS.arcface_loss(
            embeddings,
            labels,
            self.weight,
            self.scale,
            self.margin,
            self.easy_margin,
            self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, "
            f"scale={self.scale}, margin={self.margin}, easy_margin={self.easy_margin}, "
            f"{super().extra_repr()}"
        )


class CosFaceLoss(_MarginSoftmaxLoss):
    """CosFace with learnable class centres; see :func:`losskit.metric.cosface_loss`."""

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        scale: float = 64.0,
        margin: float = 0.35,
        reduction: str = "mean",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(embedding_dim, num_classes, scale, reduction, device, dtype)
        self.margin = check_nonnegative("margin", margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return MS.cosface_loss(
            embeddings, labels, self.weight, self.scale, self.margin, self.reduction
        )

    def extra_repr(self) -> str:
        return (
            f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, "
            f"scale={self.scale}, margin={self.margin}, {super().extra_repr()}"
        )


def _positive_int(name: str, value: object) -> int:
    v = check_int(name, value)
    if v < 1:
        raise ValueError(f"{name} must be an int >= 1, got {v}")
    return v
