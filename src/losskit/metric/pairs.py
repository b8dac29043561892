"""Pair-based metric losses: contrastive (positive/negative margins) and multi-similarity."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_bool
from .._precision import upcast
from .._reduction import check_reduction
from ._common import (
    check_embeddings,
    check_finite,
    check_labels,
    check_metric,
    check_nonnegative,
    check_positive,
    label_masks,
    nan_if_nonfinite,
)
from .distances import distance_matrix
from .miners import pair_masks

__all__ = ["contrastive_loss", "multi_similarity_loss"]


def contrastive_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    metric: str = "euclidean",
    p: float = 2.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Contrastive loss over every ordered pair of the batch, with positive and negative margins.

    For a positive pair (:math:`y_i = y_j`, :math:`i \ne j`): :math:`[d_{ij} - m_+]_+`; for a
    negative pair (:math:`y_i \ne y_j`): :math:`[m_- - d_{ij}]_+`.

    Args:
        embeddings: ``(B, D)`` floating.
        labels: ``(B,)`` integer identity labels.
        pos_margin: :math:`m_+ \ge 0`, the distance below which positives are left alone.
        neg_margin: :math:`m_- \ge 0`, the distance beyond which negatives are left alone.
        metric, p: the distance (see :func:`pairwise_distance_matrix`).
        reduction: ``"none"``: every pair's loss, shape ``(#positive + #negative pairs,)``, the
            positive pairs first, each set in row-major (i, j) order; ``"sum"``: their sum;
            ``"mean"``: the mean of the positive-pair losses over the positive pairs with a
            non-zero loss **plus** the same mean for the negative pairs (so the few positive
            pairs are not drowned by the many negative ones; pytorch-metric-learning's
            ``ContrastiveLoss`` with its default ``AvgNonZeroReducer``).

    Returns:
        A scalar, or the per-pair losses for ``reduction="none"``; the dtype of ``embeddings``.

    Edge cases: a set with no pair (or no non-zero loss) contributes 0 to ``mean``; a batch with
    no pair at all gives 0 (empty for ``none``) with a zero gradient. Zero gradient at the kinks.

    Example:
        >>> x = torch.randn(16, 8, requires_grad=True)
        >>> losskit.metric.contrastive_loss(x, torch.arange(4).repeat(4), neg_margin=2.0).backward()

    Reference: Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an Invariant
    Mapping" (CVPR 2006), with the hinge on distances (not squared) and a positive margin as in
    pytorch-metric-learning.
    """
    x = check_embeddings(embeddings)
    labels = check_labels(labels, x)
    pos_margin = check_nonnegative("pos_margin", pos_margin)
    neg_margin = check_nonnegative("neg_margin", neg_margin)
    metric, p = check_metric(metric, p)
    reduction = check_reduction(reduction)

    dist = distance_matrix(upcast(x), None, metric, p)
    same, different = label_masks(labels)
    pos_loss = F.relu(dist - pos_margin)
    neg_loss = F.relu(neg_margin - dist)
    if reduction == "none":
        out = torch.cat([pos_loss[same], neg_loss[different]])
    elif reduction == "sum":
        out = torch.where(same, pos_loss, 0.0).sum() + torch.where(different, neg_loss, 0.0).sum()
    else:
        out = _mean_nonzero(pos_loss, same) + _mean_nonzero(neg_loss, different)
    return nan_if_nonfinite(out, x).to(x.dtype)


def _mean_nonzero(loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``loss`` over the masked entries that are > 0 (0 if there is none)."""
    kept = mask & (loss > 0)
    return torch.where(kept, loss, 0.0).sum() / kept.sum().clamp_min(1)


def multi_similarity_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    epsilon: float = 0.1,
    mining: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Multi-similarity loss: soft-weighted positive and negative pairs on cosine similarity.

    With :math:`S_{ij} = \hat x_i \cdot \hat x_j` (normalised rows), per anchor :math:`i`:

    .. math::
        \ell_i = \frac{1}{\alpha}\log\Big(1 + \sum_{p \in P_i} e^{-\alpha (S_{ip} - \lambda)}\Big)
               + \frac{1}{\beta}\log\Big(1 + \sum_{n \in N_i} e^{\beta (S_{in} - \lambda)}\Big)

    where :math:`\lambda` is ``base``. With ``mining`` (the paper's pair mining), :math:`N_i`
    keeps the negatives with :math:`S_{in} > \min_p S_{ip} - \epsilon` and :math:`P_i` the
    positives with :math:`S_{ip} < \max_n S_{in} + \epsilon` (see :func:`mine_pairs`, strategy
    ``"hard"``); without it every positive and negative. An anchor whose :math:`P_i` or
    :math:`N_i` is empty is skipped (loss 0), as in the authors' code; pytorch-metric-learning's
    ``MultiSimilarityLoss`` keeps the negative term of an anchor without positives, so with
    ``mining=False`` and a label that occurs once the two differ.

    Args:
        embeddings: ``(B, D)`` floating (normalised inside).
        labels: ``(B,)`` integer identity labels.
        alpha, beta: :math:`\alpha, \beta > 0`, the positive and negative temperatures.
        base: :math:`\lambda`, the similarity margin.
        epsilon: :math:`\epsilon \ge 0` of the pair mining.
        mining: apply the pair mining.
        reduction: ``"none"``: ``(B,)`` per anchor (0 for skipped anchors); ``"mean"``: the sum
            divided by ``B`` (skipped anchors included, as in the authors' code and
            pytorch-metric-learning); ``"sum"``.

    Returns:
        A scalar, or ``(B,)`` for ``reduction="none"``; the dtype of ``embeddings``.

    Edge cases: a batch with no valid anchor (or empty) gives 0 with a zero gradient.
    The log-sum-exp is computed with a 0 term for the "1 +", so it is finite for any
    :math:`\alpha, \beta` and never NaN when a set is empty.

    Example:
        >>> x = torch.randn(16, 8, requires_grad=True)
        >>> losskit.metric.multi_similarity_loss(x, torch.arange(4).repeat(4)).backward()

    Reference: Wang, Han, Huang, Dong & Scott, "Multi-Similarity Loss with General Pair
    Weighting for Deep Metric Learning" (CVPR 2019), eq. 12 and the mining of eq. 8-9.
    """
    x = check_embeddings(embeddings)
    labels = check_labels(labels, x)
    alpha = check_positive("alpha", alpha)
    beta = check_positive("beta", beta)
    base = check_finite("base", base)
    epsilon = check_nonnegative("epsilon", epsilon)
    mining = check_bool("mining", mining)
    reduction = check_reduction(reduction)

    xn = F.normalize(upcast(x), dim=1)
    sim = xn @ xn.T
    same, different = label_masks(labels)
    with torch.no_grad():
        # The mining is written with distances; 1 - S keeps the order and the epsilon band.
        strategy = "hard" if mining else "all"
        keep_pos, keep_neg = pair_masks(1.0 - sim, same, different, strategy, epsilon)
    pos_term = _log1p_sum_exp(-alpha * (sim - base), keep_pos) / alpha
    neg_term = _log1p_sum_exp(beta * (sim - base), keep_neg) / beta
    valid = keep_pos.any(1) & keep_neg.any(1)
    per_anchor = torch.where(valid, pos_term + neg_term, 0.0)
    if reduction == "none":
        out = per_anchor
    elif reduction == "sum":
        out = per_anchor.sum()
    else:
        out = per_anchor.sum() / max(per_anchor.numel(), 1)
    return nan_if_nonfinite(out, x).to(x.dtype)


def _log1p_sum_exp(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise ``log(1 + sum_{j in mask} exp(z_ij))`` as a log-sum-exp with a 0 column."""
    masked = torch.where(mask, z, float("-inf"))
    zero = z.new_zeros(z.shape[0], 1)
    return torch.logsumexp(torch.cat([zero, masked], dim=1), dim=1)
