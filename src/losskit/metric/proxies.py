"""Losses against learnable class vectors: Proxy-Anchor and sub-centre ArcFace.

The functional forms take the proxies / centres explicitly; the Module forms
(:class:`losskit.nn.ProxyAnchorLoss`, :class:`losskit.nn.SubCenterArcFaceLoss`) own them as a
learnable ``nn.Parameter``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._checks import check_class_indices, check_floating, check_same_device
from .._dispatch import Backends
from .._precision import upcast
from .._reduction import check_reduction
from ._common import (
    check_embeddings,
    check_labels,
    check_nonnegative,
    check_positive,
    nan_if_nonfinite,
    safe_sqrt,
)
from .margin_softmax import check_angle

__all__ = ["proxy_anchor_loss", "sub_center_arcface_loss"]


def _normalised_pair(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both normalised, in the wider of their compute dtypes (float32 for half inputs)."""
    dtype = torch.promote_types(upcast(x).dtype, upcast(w).dtype)
    return F.normalize(x.to(dtype), dim=-1), F.normalize(w.to(dtype), dim=-1)


def _log1p_sum_exp(z: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """``log(1 + sum_{mask} exp(z))`` along ``dim``: a log-sum-exp with a 0 term, never NaN."""
    masked = torch.where(mask, z, float("-inf"))
    zero = z.new_zeros(1).expand(*(1 if d == dim else n for d, n in enumerate(z.shape)))
    return torch.logsumexp(torch.cat([zero, masked], dim=dim), dim=dim)


# ---------------------------------------------------------------- Proxy-Anchor


def _proxy_anchor_formula(x, labels, proxies, margin, alpha, reduction):
    xn, pn = _normalised_pair(x, proxies)
    cos = xn @ pn.T  # (B, C)
    num_classes = proxies.shape[0]
    pos = labels[:, None] == torch.arange(num_classes, device=labels.device)[None, :]
    pos_term = _log1p_sum_exp(-alpha * (cos - margin), pos, dim=0)  # (C,)
    neg_term = _log1p_sum_exp(alpha * (cos + margin), ~pos, dim=0)
    if reduction == "none":
        out = pos_term + neg_term
    elif reduction == "sum":
        out = pos_term.sum() + neg_term.sum()
    else:
        with_pos = pos.any(0).sum().clamp_min(1)
        out = pos_term.sum() / with_pos + neg_term.sum() / max(num_classes, 1)
    return nan_if_nonfinite(out, xn).to(x.dtype)


_PROXY_ANCHOR = Backends("proxy_anchor_loss", formula=_proxy_anchor_formula)


def proxy_anchor_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    proxies: torch.Tensor,
    margin: float = 0.1,
    alpha: float = 32.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Proxy-Anchor loss: each class proxy is an anchor pulling its samples and pushing the rest.

    With :math:`s(x, p) = \hat x \cdot \hat p` (normalised), :math:`X_p^+` the samples of proxy
    :math:`p`'s class, :math:`X_p^-` the others, and :math:`P^+` the proxies with at least one
    sample in the batch (eq. 4 of the paper):

    .. math::
        \ell = \frac{1}{|P^+|} \sum_{p \in P^+} \log\Big(1 + \sum_{x \in X_p^+}
               e^{-\alpha (s(x, p) - \delta)}\Big)
             + \frac{1}{|P|} \sum_{p \in P} \log\Big(1 + \sum_{x \in X_p^-}
               e^{\alpha (s(x, p) + \delta)}\Big)

    Each ``log(1 + sum exp)`` is a log-sum-exp with a 0 term: finite for any :math:`\alpha`.

    Args:
        embeddings: ``(B, D)`` floating.
        labels: ``(B,)`` class indices in ``[0, C)``.
        proxies: ``(C, D)`` floating, one proxy per class (normalised inside).
        margin: :math:`\delta \ge 0`.
        alpha: :math:`\alpha > 0`, the scale.
        reduction: ``"mean"``: the paper's loss above (each term averaged over its own proxy
            set); ``"sum"``: both terms summed over the proxies; ``"none"``: ``(C,)``, the
            positive plus the negative term of each proxy (unnormalised).

    Returns:
        A scalar, or ``(C,)`` for ``reduction="none"``; the dtype of ``embeddings``.

    Edge cases: an empty batch gives 0 (no proxy has a positive, and no negative term). A label
    outside ``[0, C)`` raises ``IndexError``. NaN or infinite embeddings give NaN.

    Differences from pytorch-metric-learning 2.9 ``ProxyAnchorLoss(num_classes,
    embedding_size, margin=0.1, alpha=32)``: the same values and defaults; the functional takes
    the proxies explicitly (:class:`losskit.nn.ProxyAnchorLoss` owns them, initialised like PML
    and the authors: Kaiming-normal, ``fan_out``). PML casts its proxies to the embeddings' dtype;
    here the wider dtype is used. No miner weights and no weight regulariser.

    Example:
        >>> proxies = torch.randn(10, 64, requires_grad=True)
        >>> x, y = torch.randn(8, 64), torch.randint(10, (8,))
        >>> losskit.metric.proxy_anchor_loss(x, y, proxies).backward()

    Reference: Kim, Kim, Cho & Kwak, "Proxy Anchor Loss for Deep Metric Learning" (CVPR 2020).
    """
    x, labels, p = _check_with_classes(embeddings, labels, proxies, "proxies", 2)
    margin = check_nonnegative("margin", margin)
    alpha = check_positive("alpha", alpha)
    reduction = check_reduction(reduction)
    return _PROXY_ANCHOR(x, labels, p, margin, alpha, reduction)


proxy_anchor_loss.backends = _PROXY_ANCHOR


# ---------------------------------------------------------------- sub-centre ArcFace


def arcface_target(cos_y: torch.Tensor, margin: float) -> torch.Tensor:
    """``cos(theta + m)`` while ``theta + m <= pi``, else ``cos(theta) - m sin(m)`` (no acos).

    The same curve as :func:`losskit.metric.arcface_loss` without ``easy_margin``.
    """
    sin_y = safe_sqrt(1.0 - cos_y * cos_y, 1e-12)
    shifted = cos_y * math.cos(margin) - sin_y * math.sin(margin)
    return torch.where(
        cos_y > math.cos(math.pi - margin), shifted, cos_y - margin * math.sin(margin)
    )


def _sub_center_formula(x, labels, weight, scale, margin, reduction):
    xn, wn = _normalised_pair(x, weight)
    c, k, d = weight.shape
    cos = (xn @ wn.reshape(c * k, d).T).view(x.shape[0], c, k).amax(dim=2)  # the nearest sub-centre
    y = labels[:, None].long()
    cos_y = cos.gather(1, y).clamp(-1.0, 1.0)
    logits = scale * cos.scatter(1, y, arcface_target(cos_y, margin))
    out = F.cross_entropy(logits, labels.long(), reduction=reduction)
    return nan_if_nonfinite(out, xn).to(x.dtype)


_SUB_CENTER = Backends("sub_center_arcface_loss", formula=_sub_center_formula)


def sub_center_arcface_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    scale: float = 64.0,
    margin: float = 0.5,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Sub-centre ArcFace: ArcFace against the nearest of :math:`K` centres of each class.

    With :math:`\cos\theta_{ic} = \max_k \hat x_i \cdot \hat w_{ck}` (rows normalised), the target
    logit is :math:`s\cos(\theta_{iy} + m)` and the others :math:`s\cos\theta_{ic}`; the loss is
    the cross entropy of these logits. :math:`\cos(\theta + m)` is computed without ``acos``;
    beyond :math:`\theta + m > \pi` the target logit is :math:`s(\cos\theta - m\sin m)`, as
    :func:`losskit.metric.arcface_loss`. The max sends the gradient to the nearest sub-centre
    (split evenly between exact ties).

    Args:
        embeddings: ``(B, D)`` floating.
        labels: ``(B,)`` class indices in ``[0, C)``.
        weight: ``(C, K, D)``: ``K`` sub-centres per class (normalised inside).
        scale: :math:`s > 0`.
        margin: :math:`m \in [0, \pi)` in radians.
        reduction: ``"none"`` (``(B,)``), ``"mean"`` or ``"sum"``, as cross entropy.

    Returns:
        A scalar, or ``(B,)``; the dtype of ``embeddings``.

    Edge cases as cross entropy: an empty batch gives NaN for ``mean`` and 0 for ``sum``. A label
    outside ``[0, C)`` raises ``IndexError``. NaN or infinite embeddings give NaN.

    Differences from pytorch-metric-learning 2.9 ``SubCenterArcFaceLoss(num_classes,
    embedding_size, margin=28.6, scale=64, sub_centers=3)``: ``margin`` is in radians here (PML:
    degrees; 28.6° = 0.499 rad); PML's weight is ``(D, C·K)`` with class ``c``'s centres in columns
    ``c·K … c·K+K-1``, which is ``weight.reshape(C * K, D).T`` here; PML computes ``acos`` (an
    infinite gradient at :math:`|\cos\theta| = 1`). The second stage of the paper (dropping
    non-dominant centres and outliers, PML's ``get_outliers``) is left to the user.

    Example:
        >>> w = torch.randn(10, 3, 64, requires_grad=True)  # 10 classes x 3 sub-centres
        >>> x, y = torch.randn(8, 64), torch.randint(10, (8,))
        >>> losskit.metric.sub_center_arcface_loss(x, y, w).backward()

    Reference: Deng, Guo, Liu, Gong & Zafeiriou, "Sub-center ArcFace: Boosting Face Recognition
    by Large-scale Noisy Web Faces" (ECCV 2020).
    """
    x, labels, w = _check_with_classes(embeddings, labels, weight, "weight", 3)
    scale = check_positive("scale", scale)
    margin = check_angle("margin", margin)
    reduction = check_reduction(reduction)
    return _SUB_CENTER(x, labels, w, scale, margin, reduction)


sub_center_arcface_loss.backends = _SUB_CENTER


def _check_with_classes(embeddings, labels, vectors, name: str, ndim: int):
    x = check_embeddings(embeddings)
    labels = check_labels(labels, x)
    w = check_floating(name, vectors)
    shape = "(num_classes, {})" if ndim == 2 else "(num_classes, sub_centers, {})"
    if w.dim() != ndim or w.shape[-1] != x.shape[1]:
        raise ValueError(
            f"{name} must be a {ndim}-D tensor of shape {shape.format(x.shape[1])}, "
            f"got shape {tuple(w.shape)}"
        )
    check_same_device(name, w, x, "embeddings")
    check_class_indices(labels, w.shape[0])
    return x, labels, w
