"""Margin-softmax classification losses on normalised features: ArcFace and CosFace.

Functional forms take the class-centre weight explicitly; the Module forms
(:class:`losskit.nn.ArcFaceLoss`, :class:`losskit.nn.CosFaceLoss`) own it as a learnable
``nn.Parameter``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._checks import check_bool, check_class_indices, check_floating, check_same_device
from .._precision import upcast
from .._reduction import check_reduction
from ._common import check_embeddings, check_labels, check_nonnegative, check_positive, safe_sqrt

__all__ = ["arcface_loss", "cosface_loss"]


def arcface_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    scale: float = 64.0,
    margin: float = 0.5,
    easy_margin: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""ArcFace: softmax cross entropy with an additive angular margin on the target class.

    With :math:`\cos\theta_{ic} = \hat x_i \cdot \hat w_c` (rows of ``embeddings`` and of
    ``weight`` normalised), the target logit becomes :math:`s\cos(\theta_{iy} + m)` and the
    others stay :math:`s\cos\theta_{ic}`; the loss is the cross entropy of these logits.

    :math:`\cos(\theta + m) = \cos\theta\cos m - \sin\theta\sin m` with
    :math:`\sin\theta = \sqrt{1 - \cos^2\theta}` (0, with zero gradient, where
    :math:`1 - \cos^2\theta \le 10^{-12}`), so there is no ``acos`` and no infinite gradient at
    :math:`|\cos\theta| = 1`. Beyond :math:`\theta + m > \pi` the curve is no longer decreasing;
    there the target logit is :math:`s(\cos\theta - m\sin m)` (the standard fallback of the
    authors' code). With ``easy_margin`` the margin applies only where :math:`\cos\theta > 0`.

    Args:
        embeddings: ``(B, D)`` floating.
        labels: ``(B,)`` class indices in ``[0, C)``.
        weight: ``(C, D)`` class centres (normalised inside).
        scale: :math:`s > 0`.
        margin: :math:`m \in [0, \pi)` in radians.
        easy_margin: apply the margin only to targets with a positive cosine.
        reduction: ``"none"`` (``(B,)``), ``"mean"`` or ``"sum"``, as :func:`losskit.cross_entropy`.

    Returns:
        A scalar, or ``(B,)``; the dtype of ``embeddings``.

    Edge cases as cross entropy: an empty batch gives NaN for ``mean`` and 0 for ``sum``. A
    label outside ``[0, C)`` raises ``IndexError``. A zero row (embedding or weight) has cosine 0.

    Example:
        >>> w = torch.randn(10, 64, requires_grad=True)
        >>> losskit.metric.arcface_loss(torch.randn(8, 64), torch.randint(10, (8,)), w).backward()

    Reference: Deng, Guo, Xue & Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep Face
    Recognition" (CVPR 2019).
    """
    x, labels, w = _check(embeddings, labels, weight)
    scale = check_positive("scale", scale)
    margin = check_angle("margin", margin)
    easy_margin = check_bool("easy_margin", easy_margin)
    reduction = check_reduction(reduction)

    cos, cos_y = _cosines(x, w, labels)
    sin_y = safe_sqrt(1.0 - cos_y * cos_y, 1e-12)
    shifted = cos_y * math.cos(margin) - sin_y * math.sin(margin)
    if easy_margin:
        target = torch.where(cos_y > 0, shifted, cos_y)
    else:
        # cos(theta + m) stops decreasing past theta = pi - m: there the target logit becomes
        # cos(theta) - m sin(m) (insightface's fallback; a jump at theta = pi - m, not a smooth
        # extension, but still a penalty that grows with theta).
        target = torch.where(
            cos_y > math.cos(math.pi - margin), shifted, cos_y - margin * math.sin(margin)
        )
    return _margin_cross_entropy(cos, target, labels, scale, reduction).to(x.dtype)


def cosface_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    scale: float = 64.0,
    margin: float = 0.35,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""CosFace (large margin cosine loss): cross entropy with an additive cosine margin.

    The target logit is :math:`s(\cos\theta_{iy} - m)`, the others :math:`s\cos\theta_{ic}`, with
    cosines between normalised rows of ``embeddings`` and ``weight``.

    Args:
        embeddings: ``(B, D)`` floating.
        labels: ``(B,)`` class indices in ``[0, C)``.
        weight: ``(C, D)`` class centres (normalised inside).
        scale: :math:`s > 0`.
        margin: :math:`m \ge 0`.
        reduction: ``"none"`` (``(B,)``), ``"mean"`` or ``"sum"``.

    Returns:
        A scalar, or ``(B,)``; the dtype of ``embeddings``.

    Edge cases as :func:`arcface_loss`.

    Example:
        >>> w = torch.randn(10, 64, requires_grad=True)
        >>> losskit.metric.cosface_loss(torch.randn(8, 64), torch.randint(10, (8,)), w).backward()

    Reference: Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition"
    (CVPR 2018).
    """
    x, labels, w = _check(embeddings, labels, weight)
    scale = check_positive("scale", scale)
    margin = check_nonnegative("margin", margin)
    reduction = check_reduction(reduction)

    cos, cos_y = _cosines(x, w, labels)
    return _margin_cross_entropy(cos, cos_y - margin, labels, scale, reduction).to(x.dtype)


def check_angle(name: str, value: object) -> float:
    v = check_nonnegative(name, value)
    if not v < math.pi:
        raise ValueError(f"{name} must be an angle in [0, pi) radians, got {value!r}")
    return v


def _check(embeddings, labels, weight):
    x = check_embeddings(embeddings)
    labels = check_labels(labels, x)
    w = check_floating("weight", weight)
    if w.dim() != 2 or w.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight must be a 2-D tensor of shape (num_classes, {x.shape[1]}), "
            f"got shape {tuple(w.shape)}"
        )
    check_same_device("weight", w, x, "embeddings")
    check_class_indices(labels, w.shape[0])
    return x, labels, w


def _cosines(x: torch.Tensor, w: torch.Tensor, labels: torch.Tensor):
    """``(B, C)`` cosines and the target column ``(B, 1)`` clamped to [-1, 1]."""
    dtype = torch.promote_types(upcast(x).dtype, upcast(w).dtype)
    xn = F.normalize(x.to(dtype), dim=1)
    wn = F.normalize(w.to(dtype), dim=1)
    cos = xn @ wn.T
    cos_y = cos.gather(1, labels[:, None].long()).clamp(-1.0, 1.0)
    return cos, cos_y


def _margin_cross_entropy(cos, target, labels, scale, reduction):
    logits = scale * cos.scatter(1, labels[:, None].long(), target)
    return F.cross_entropy(logits, labels.long(), reduction=reduction)
