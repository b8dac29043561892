"""Circle loss (Sun et al. 2020) on the cosine similarities of a labelled batch, in O(B²) memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._dispatch import Backends
from .._precision import upcast
from .._reduction import check_reduction
from ._common import (
    check_embeddings,
    check_labels,
    check_nonnegative,
    check_positive,
    label_masks,
    nan_if_nonfinite,
)

__all__ = ["circle_loss"]


def masked_logsumexp(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise ``log sum_{j in mask} exp(z_ij)``; rows with an empty mask give a finite dummy.

    An all ``-inf`` row would make logsumexp's gradient ``0 * NaN``; those rows are filled with
    zeros instead, and callers mask their result (they are the skipped anchors).
    """
    row_has_any = mask.any(1, keepdim=True)
    fill = torch.where(row_has_any, float("-inf"), 0.0).to(z.dtype)
    return torch.logsumexp(torch.where(mask, z, fill), dim=1)


def _circle_formula(x, labels, margin, gamma, reduction):
    xc = upcast(x)
    xn = F.normalize(xc, dim=1)
    sim = xn @ xn.T
    same, different = label_masks(labels)
    s = sim.detach()
    # The weights alpha are constants of the gradient (stop-gradient), as in the paper's
    # derivation, the authors' code and pytorch-metric-learning.
    alpha_p = (1.0 + margin - s).clamp_min(0.0)
    alpha_n = (s + margin).clamp_min(0.0)
    logit_p = -gamma * alpha_p * (sim - (1.0 - margin))
    logit_n = gamma * alpha_n * (sim - margin)
    z = masked_logsumexp(logit_p, same) + masked_logsumexp(logit_n, different)
    valid = same.any(1) & different.any(1)
    per_anchor = torch.where(valid, F.softplus(z), 0.0)
    if reduction == "none":
        out = per_anchor
    elif reduction == "sum":
        out = per_anchor.sum()
    else:
        out = per_anchor.sum() / valid.sum().clamp_min(1)
    return nan_if_nonfinite(out, xc).to(x.dtype)


_CIRCLE = Backends("circle_loss", formula=_circle_formula)


def circle_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.4,
    gamma: float = 80.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Circle loss with pair-wise labels: self-paced weights on every positive and negative pair.

    With :math:`s_{ij} = \hat x_i \cdot \hat x_j` (normalised rows), per anchor :math:`i` with
    positives :math:`P_i` (same label, :math:`j \ne i`) and negatives :math:`N_i`:

    .. math::
        \ell_i = \log\Big(1 + \sum_{n \in N_i} e^{\gamma \alpha_n (s_{in} - \Delta_n)}
                 \sum_{p \in P_i} e^{-\gamma \alpha_p (s_{ip} - \Delta_p)}\Big)

    with :math:`\alpha_p = [1 + m - s_{ip}]_+`, :math:`\alpha_n = [s_{in} + m]_+`,
    :math:`\Delta_p = 1 - m`, :math:`\Delta_n = m` (eq. 6 and 8 of the paper). The weights
    :math:`\alpha` are treated as constants by the gradient (a stop-gradient, as in the paper's
    gradient analysis, the authors' code and pytorch-metric-learning), so the gradient is not the
    derivative of the value. Computed as ``softplus(logsumexp_P + logsumexp_N)``: finite for any
    :math:`\gamma`.

    Args:
        embeddings: ``(B, D)`` floating (normalised inside).
        labels: ``(B,)`` integer identity labels.
        margin: :math:`m \ge 0`, the relaxation (paper: 0.25 for faces and re-id, 0.4 for
            fine-grained retrieval).
        gamma: :math:`\gamma > 0`, the scale (paper: 256, 128, 80 for the same tasks).
        reduction: ``"none"``: ``(B,)`` per anchor (0 for an anchor without a positive or a
            negative); ``"mean"``: the mean over the anchors that have both; ``"sum"``.

    Returns:
        A scalar, or ``(B,)`` for ``reduction="none"``; the dtype of ``embeddings``.

    Edge cases: a batch with no anchor having both a positive and a negative (empty, one
    identity, all distinct) gives 0 with a zero gradient. NaN or infinite embeddings give NaN.

    Differences from pytorch-metric-learning 2.9 ``CircleLoss(m, gamma)``: the defaults are the
    same (``m=0.4``, ``gamma=80``), the hyper-parameter ``m`` is called ``margin`` here. Its
    ``AvgNonZeroReducer`` divides by the anchors whose loss is ``> 0``; here the mean is over the
    anchors with a positive and a negative, which differs only where an anchor's softplus
    underflows to exactly 0 (:math:`z < -745` in float64, about :math:`-104` in float32).

    Example:
        >>> x = torch.randn(16, 8, requires_grad=True)
        >>> losskit.metric.circle_loss(x, torch.arange(4).repeat(4)).backward()

    Reference: Sun, Cheng, Zhang, Zhang, Zheng, Wang & Wei, "Circle Loss: A Unified Perspective
    of Pair Similarity Optimization" (CVPR 2020), eq. 4 with pair-wise labels.
    """
    x = check_embeddings(embeddings)
    labels = check_labels(labels, x)
    margin = check_nonnegative("margin", margin)
    gamma = check_positive("gamma", gamma)
    reduction = check_reduction(reduction)
    return _CIRCLE(x, labels, margin, gamma, reduction)


circle_loss.backends = _CIRCLE
