"""N-pair loss (Sohn 2016): one (anchor, positive) pair per class, the other positives as negatives."""

from __future__ import annotations

import torch

from .._dispatch import Backends
from .._precision import upcast
from .._reduction import check_reduction
from ._common import check_embeddings, check_labels, nan_if_nonfinite
from .circle import masked_logsumexp

__all__ = ["n_pairs_loss"]


def n_pair_roles(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(is_anchor (B,), is_positive (B,), pair (B, B))`` chosen as pytorch-metric-learning does.

    The anchor of a class is its first sample and the positive its second (classes with a single
    sample have no pair); ``pair[i, j]`` is True where ``j`` is the positive of anchor ``i``.
    Built from ``B×B`` masks, so the shapes do not depend on the labels.
    """
    idx = torch.arange(labels.shape[0], device=labels.device)
    same = labels[:, None] == labels[None, :]
    before = (same & (idx[None, :] < idx[:, None])).sum(1)  # same-label samples before i
    is_positive = before == 1
    pair = same & is_positive[None, :] & (before == 0)[:, None]
    is_anchor = pair.any(1)
    return is_anchor, is_positive, pair


def _n_pairs_formula(x, labels, reduction):
    xc = upcast(x)
    is_anchor, is_positive, pair = n_pair_roles(labels)
    sim = xc @ xc.T
    # Cross entropy of anchor i's row over the positives of every pair, target its own.
    logits = torch.where(is_positive[None, :], sim, 0.0)
    lse = masked_logsumexp(logits, is_positive[None, :].expand_as(sim))
    target = torch.where(pair, sim, 0.0).sum(1)
    per_anchor = torch.where(is_anchor, lse - target, 0.0)
    if reduction == "none":
        out = per_anchor
    elif reduction == "sum":
        out = per_anchor.sum()
    else:
        out = per_anchor.sum() / is_anchor.sum().clamp_min(1)
    return nan_if_nonfinite(out, xc).to(x.dtype)


_N_PAIRS = Backends("n_pairs_loss", formula=_n_pairs_formula)


def n_pairs_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    r"""N-pair loss: softmax cross entropy of each anchor against the positives of all pairs.

    From the batch, each class with at least two samples gives one pair: its first sample is
    the anchor :math:`a_c`, its second the positive :math:`p_c`. With :math:`C'` such classes:

    .. math::
        \ell_c = -\log \frac{e^{a_c \cdot p_c}}{\sum_{c'=1}^{C'} e^{a_c \cdot p_{c'}}}
               = \log\Big(1 + \sum_{c' \ne c} e^{a_c \cdot p_{c'} - a_c \cdot p_c}\Big)

    on raw inner products (no normalisation, as the paper). The paper also penalises
    :math:`\lambda\lVert f\rVert^2` of the embeddings (:math:`\lambda = 0.002`): add
    ``lam * embeddings.square().sum(1).mean()`` yourself; it is not part of this function.

    Args:
        embeddings: ``(B, D)`` floating.
        labels: ``(B,)`` integer identity labels (any values).
        reduction: ``"none"``: ``(B,)``, :math:`\ell_c` at the row of each anchor and 0 elsewhere;
            ``"mean"``: the mean over the pairs; ``"sum"``.

    Returns:
        A scalar, or ``(B,)`` for ``reduction="none"``; the dtype of ``embeddings``.

    Edge cases: no class with two samples gives 0 with a zero gradient; one pair gives 0 (its
    softmax has one entry). NaN or infinite embeddings give NaN.

    Differences from pytorch-metric-learning 2.9 ``NPairsLoss()``: the same pairs (PML keeps the
    first positive pair per label: the first and second sample of the class) and the same values
    on normalised embeddings; PML's default ``DotProductSimilarity`` normalises the embeddings
    (``normalize_embeddings=True``), so its default is on cosine similarities: pass normalised
    embeddings to reproduce it. ``"none"`` here is per batch row, where PML reports per pair;
    ``"mean"`` is PML's default mean over the pairs.

    Example:
        >>> x = torch.randn(16, 8, requires_grad=True)
        >>> losskit.metric.n_pairs_loss(x, torch.arange(8).repeat(2)).backward()

    Reference: Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective"
    (NeurIPS 2016), eq. 3 (the N-pair-mc loss).
    """
    x = check_embeddings(embeddings)
    labels = check_labels(labels, x)
    reduction = check_reduction(reduction)
    return _N_PAIRS(x, labels, reduction)


n_pairs_loss.backends = _N_PAIRS
