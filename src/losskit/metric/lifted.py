"""Lifted structure loss: Oh Song et al.'s original form and Hermans et al.'s generalisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._dispatch import Backends
from .._precision import upcast
from .._reduction import check_reduction
from ._common import (
    check_choice,
    check_embeddings,
    check_labels,
    check_metric,
    check_nonnegative,
    label_masks,
    nan_if_nonfinite,
)
from .circle import masked_logsumexp
from .distances import distance_matrix

__all__ = ["LIFTED_FORMS", "lifted_structure_loss"]

LIFTED_FORMS: tuple[str, ...] = ("original", "generalized")


def _lifted_formula(x, labels, neg_margin, pos_margin, form, metric, p, reduction):
    xc = upcast(x)
    dist = distance_matrix(xc, None, metric, p)
    same, different = label_masks(labels)
    if form == "original":
        # J_ij = log(sum_{k in N_i} e^{m- - D_ik} + sum_{l in N_j} e^{m- - D_jl}) + D_ij - m+,
        # from one log-sum-exp per row: B×B memory, never the (pairs × pairs) mask of PML.
        neg_lse = masked_logsumexp(neg_margin - dist, different)  # (B,)
        joint = torch.logaddexp(neg_lse[:, None], neg_lse[None, :]) + dist - pos_margin
        # Without any negative (one identity) the rows were filled: no pair has a loss then.
        keep = same & different.any()
        pair_loss = torch.where(keep, F.relu(joint).square() / 2.0, 0.0)
        if reduction == "none":
            out = pair_loss[same]
        elif reduction == "sum":
            out = pair_loss.sum()
        else:
            out = pair_loss.sum() / same.sum().clamp_min(1)
    else:
        pos_lse = masked_logsumexp(dist - pos_margin, same)
        neg_lse = masked_logsumexp(neg_margin - dist, different)
        valid = same.any(1) & different.any(1)
        per_anchor = torch.where(valid, F.relu(pos_lse + neg_lse), 0.0)
        if reduction == "none":
            out = per_anchor
        elif reduction == "sum":
            out = per_anchor.sum()
        else:
            out = per_anchor.sum() / max(per_anchor.numel(), 1)
    return nan_if_nonfinite(out, xc).to(x.dtype)


_LIFTED = Backends("lifted_structure_loss", formula=_lifted_formula)


def lifted_structure_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    neg_margin: float = 1.0,
    pos_margin: float = 0.0,
    form: str = "original",
    metric: str = "euclidean",
    p: float = 2.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Lifted structure loss over every positive pair (``"original"``) or anchor (``"generalized"``).

    With distances :math:`D_{ij}` (see :func:`pairwise_distance_matrix`), positives :math:`P_i`
    (same label, :math:`j \ne i`) and negatives :math:`N_i`:

    - ``"original"`` (Oh Song et al. 2016, eq. 4), per ordered positive pair :math:`(i, j)`:

      .. math::
          J_{ij} = \log\Big(\sum_{k \in N_i} e^{m_- - D_{ik}} + \sum_{l \in N_j} e^{m_- - D_{jl}}
                   \Big) + D_{ij} - m_+, \qquad \ell_{ij} = \tfrac12 [J_{ij}]_+^2

      and ``mean`` is :math:`\frac{1}{|P|}\sum_{(i,j)} \ell_{ij}` over the ordered pairs, which is
      the paper's :math:`\frac{1}{2|P|}\sum [J_{ij}]_+^2` over unordered pairs. Each pair's
      negative term is the log-add-exp of two per-row log-sum-exps, so memory is ``B×B``.
    - ``"generalized"`` (Hermans et al. 2017, page 4), per anchor :math:`i`:

      .. math::
          \ell_i = \Big[\log\sum_{p \in P_i} e^{D_{ip} - m_+}
                   + \log\sum_{n \in N_i} e^{m_- - D_{in}}\Big]_+

    Args:
        embeddings: ``(B, D)`` floating (not normalised: normalise them first for the usual
            unit-sphere setting).
        labels: ``(B,)`` integer identity labels.
        neg_margin: :math:`m_- \ge 0`.
        pos_margin: :math:`m_+ \ge 0`.
        form: ``"original" | "generalized"``.
        metric, p: the distance, see :func:`pairwise_distance_matrix`.
        reduction: ``"original"``: ``"none"`` gives one loss per ordered positive pair, shape
            ``(#pairs,)`` in row-major order, ``"mean"`` their mean, ``"sum"`` their sum.
            ``"generalized"``: ``"none"`` gives ``(B,)`` per anchor (0 for an anchor without a
            positive or a negative), ``"mean"`` their sum divided by ``B``, ``"sum"``.

    Returns:
        A scalar, or the per-pair / per-anchor losses for ``reduction="none"``; the dtype of
        ``embeddings``.

    Edge cases: no positive pair (all distinct, empty batch) or no negative (one identity) gives
    0 with a zero gradient (``none``: empty for ``"original"``). NaN or infinite embeddings give
    NaN.

    Differences from pytorch-metric-learning 2.9: ``"original"`` is ``LiftedStructureLoss`` and
    ``"generalized"`` is ``GeneralizedLiftedStructureLoss`` (same margins and defaults), except
    that PML's default distance normalises the embeddings (``LpDistance(normalize_embeddings=
    True)``) and this function does not; ``GeneralizedLiftedStructureLoss`` keeps the negative
    term of an anchor without positives, here such an anchor is skipped (both divide by ``B``).
    PML's ``LiftedStructureLoss`` builds a (positive pairs × negative pairs) mask, ``O(B⁴)``
    memory; this is ``O(B²)``.

    Example:
        >>> x = torch.nn.functional.normalize(torch.randn(16, 8), dim=1).requires_grad_()
        >>> losskit.metric.lifted_structure_loss(x, torch.arange(4).repeat(4)).backward()

    References: Oh Song, Xiang, Jegelka & Savarese, "Deep Metric Learning via Lifted Structured
    Feature Embedding" (CVPR 2016); Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for
    Person Re-Identification" (2017).
    """
    x = check_embeddings(embeddings)
    labels = check_labels(labels, x)
    neg_margin = check_nonnegative("neg_margin", neg_margin)
    pos_margin = check_nonnegative("pos_margin", pos_margin)
    form = check_choice("form", form, LIFTED_FORMS)
    metric, p = check_metric(metric, p)
    reduction = check_reduction(reduction)
    return _LIFTED(x, labels, neg_margin, pos_margin, form, metric, p, reduction)


lifted_structure_loss.backends = _LIFTED
