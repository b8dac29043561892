"""Module forms of circle, Proxy-Anchor, sub-centre ArcFace, lifted structure and N-pair losses.

``ProxyAnchorLoss`` owns the class proxies ``(num_classes, embedding_dim)`` and
``SubCenterArcFaceLoss`` the sub-centres ``(num_classes, sub_centers, embedding_dim)`` as learnable
``nn.Parameter``: put the criterion's parameters in the optimizer next to the model's (the
Proxy-Anchor paper trains the proxies with a 100× larger learning rate).
"""

from __future__ import annotations

import torch
from torch import nn

from ..metric import circle as CF
from ..metric import lifted as LF
from ..metric import npairs as NF
from ..metric import proxies as PF
from ..metric._common import check_choice, check_metric, check_nonnegative, check_positive
from ..metric.margin_softmax import check_angle
from ._base import Loss
from .metric import _positive_int

__all__ = [
    "CircleLoss",
    "LiftedStructureLoss",
    "NPairsLoss",
    "ProxyAnchorLoss",
    "SubCenterArcFaceLoss",
]


class CircleLoss(Loss):
    """Module form of :func:`losskit.metric.circle_loss`; ``forward(embeddings, labels)``."""

    def __init__(self, margin: float = 0.4, gamma: float = 80.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.margin = check_nonnegative("margin", margin)
        self.gamma = check_positive("gamma", gamma)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return CF.circle_loss(embeddings, labels, self.margin, self.gamma, self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, gamma={self.gamma}, {super().extra_repr()}"


class LiftedStructureLoss(Loss):
    """Module form of :func:`losskit.metric.lifted_structure_loss`."""

    def __init__(
        self,
        neg_margin: float = 1.0,
        pos_margin: float = 0.0,
        form: str = "original",
        metric: str = "euclidean",
        p: float = 2.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.neg_margin = check_nonnegative("neg_margin", neg_margin)
        self.pos_margin = check_nonnegative("pos_margin", pos_margin)
        self.form = check_choice("form", form, LF.LIFTED_FORMS)
        self.metric, self.p = check_metric(metric, p)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return LF.lifted_structure_loss(
            embeddings,
            labels,
            self.neg_margin,
            self.pos_margin,
            self.form,
            self.metric,
            self.p,
            self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"neg_margin={self.neg_margin}, pos_margin={self.pos_margin}, form={self.form!r}, "
            f"metric={self.metric!r}, {super().extra_repr()}"
        )


class NPairsLoss(Loss):
    """Module form of :func:`losskit.metric.n_pairs_loss`."""

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return NF.n_pairs_loss(embeddings, labels, self.reduction)


class ProxyAnchorLoss(Loss):
    """Proxy-Anchor with learnable proxies; see :func:`losskit.metric.proxy_anchor_loss`.

    ``forward(embeddings (B, D), labels (B,))``; ``proxies`` is an ``nn.Parameter`` of shape
    ``(num_classes, embedding_dim)``, initialised Kaiming-normal (``fan_out``) as the authors'
    code and pytorch-metric-learning.

    Example:
        >>> criterion = losskit.nn.ProxyAnchorLoss(embedding_dim=64, num_classes=10)
        >>> criterion(torch.randn(8, 64), torch.randint(10, (8,))).backward()
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        margin: float = 0.1,
        alpha: float = 32.0,
        reduction: str = "mean",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(reduction)
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        self.num_classes = _positive_int("num_classes", num_classes)
        self.margin = check_nonnegative("margin", margin)
        self.alpha = check_positive("alpha", alpha)
        self.proxies = nn.Parameter(
            torch.empty(self.num_classes, self.embedding_dim, device=device, dtype=dtype)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.proxies, mode="fan_out")

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return PF.proxy_anchor_loss(
            embeddings, labels, self.proxies, self.margin, self.alpha, self.reduction
        )

    def extra_repr(self) -> str:
        return (
            f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, "
            f"margin={self.margin}, alpha={self.alpha}, {super().extra_repr()}"
        )


class SubCenterArcFaceLoss(Loss):
    """Sub-centre ArcFace with learnable centres; see :func:`losskit.metric.sub_center_arcface_loss`.

    ``weight`` is an ``nn.Parameter`` of shape ``(num_classes, sub_centers, embedding_dim)``
    (Xavier-uniform over the ``num_classes × sub_centers`` rows, as :class:`ArcFaceLoss`).

    Example:
        >>> criterion = losskit.nn.SubCenterArcFaceLoss(64, num_classes=10, sub_centers=3)
        >>> criterion(torch.randn(8, 64), torch.randint(10, (8,))).backward()
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        sub_centers: int = 3,
        scale: float = 64.0,
        margin: float = 0.5,
        reduction: str = "mean",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(reduction)
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        self.num_classes = _positive_int("num_classes", num_classes)
        self.sub_centers = _positive_int("sub_centers", sub_centers)
        self.scale = check_positive("scale", scale)
        self.margin = check_angle("margin", margin)
        self.weight = nn.Parameter(
            torch.empty(
                self.num_classes, self.sub_centers, self.embedding_dim, device=device, dtype=dtype
            )
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            nn.init.xavier_uniform_(self.weight.view(-1, self.embedding_dim))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return PF.sub_center_arcface_loss(
            embeddings, labels, self.weight, self.scale, self.margin, self.reduction
        )

    def extra_repr(self) -> str:
        return (
            f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, "
            f"sub_centers={self.sub_centers}, scale={self.scale}, margin={self.margin}, "
            f"{super().extra_repr()}"
        )
