"""Online miners: index tuples of triplets and pairs chosen inside a batch, in O(B²) memory.

Every miner works on the ``(B, B)`` distance matrix and label masks; none builds a ``B×B×B``
tensor. Triplet miners that look at every (anchor, positive) pair against every negative loop
over chunks of pairs, so their largest temporary holds about ``2^20`` elements whatever ``B``.
The index tensors they *return* are as long as the selection (for batch-all that can be
``O(B³)`` triplets: use :func:`losskit.metric.triplet_loss`, which reduces without listing them).

Conventions: an anchor without a positive (its label occurs once) or without a negative (every
label equals its own) yields no triplet. Indices are ``int64`` on the embeddings' device, in
lexicographic order of (anchor, positive, negative). Mining runs without gradient.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch

from .._dispatch import Backends
from .._precision import upcast
from ..kernels.triplet.rules import batch_hard_kernel, batch_hard_refuses
from ._common import (
    CHUNK_ELEMENTS,
    check_choice,
    check_embeddings,
    check_labels,
    check_metric,
    check_nonnegative,
    label_masks,
)
from .distances import distance_matrix, ordering_matrix

__all__ = [
    "PAIR_STRATEGIES",
    "Pairs",
    "Triplets",
    "batch_all_triplets",
    "batch_hard_triplets",
    "mine_pairs",
    "semi_hard_triplets",
]

PAIR_STRATEGIES: tuple[str, ...] = ("all", "hard", "easy")


class Triplets(NamedTuple):
    """Indices of mined triplets: ``embeddings[anchor[t]]``, ``[positive[t]]``, ``[negative[t]]``."""

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor


class Pairs(NamedTuple):
    """Indices of mined pairs: positive pairs ``(pos_anchor, positive)``, negative pairs
    ``(neg_anchor, negative)``."""

    pos_anchor: torch.Tensor
    positive: torch.Tensor
    neg_anchor: torch.Tensor
    negative: torch.Tensor


# ---------------------------------------------------------------- public miners


def batch_hard_triplets(
    embeddings: torch.Tensor, labels: torch.Tensor, metric: str = "euclidean", p: float = 2.0
) -> Triplets:
    r"""Batch-hard mining: per anchor the farthest positive and the closest negative.

    For each anchor :math:`a` with at least one positive and one negative:
    :math:`p^* = \arg\max_{p: y_p = y_a, p \ne a} d(a, p)`,
    :math:`n^* = \arg\min_{n: y_n \ne y_a} d(a, n)` (the first index on a tie).

    Args:
        embeddings: ``(B, D)`` floating.
        labels: ``(B,)`` integer identity labels.
        metric, p: the distance (see :func:`pairwise_distance_matrix`).

    Returns:
        :class:`Triplets`, one per valid anchor, in increasing anchor order.

    Reference: Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person
    Re-Identification" (2017).
    """
    x, labels, metric, p = _check(embeddings, labels, metric, p)
    return batch_hard_from_embeddings(x, labels, metric, p)


def batch_all_triplets(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float | None = 0.2,
    metric: str = "euclidean",
    p: float = 2.0,
) -> Triplets:
    r"""Batch-all mining: every valid triplet whose hinge loss is positive.

    A triplet is valid when :math:`y_p = y_a`, :math:`p \ne a` and :math:`y_n \ne y_a`; it is
    kept when :math:`d(a,p) - d(a,n) + \text{margin} > 0`. With ``margin=None`` every valid
    triplet is returned.

    Memory: the loop runs over chunks of (anchor, positive) pairs, so the work is
    ``O(#pairs · B)`` and the temporaries ``O(B²)``; only the returned indices grow with the
    number of triplets kept.

    Returns:
        :class:`Triplets` in lexicographic (anchor, positive, negative) order.

    Reference: Hermans et al. (2017), "batch all".
    """
    x, labels, metric, p = _check(embeddings, labels, metric, p)
    if margin is not None:
        margin = check_nonnegative("margin", margin)
    with torch.no_grad():
        dist = distance_matrix(x, None, metric, p)
        return batch_all_from_distances(dist, labels, margin)


def semi_hard_triplets(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.2,
    metric: str = "euclidean",
    p: float = 2.0,
) -> Triplets:
    r"""Semi-hard mining (FaceNet): one negative for every (anchor, positive) pair.

    The negative is the closest one farther than the positive inside the margin,
    :math:`d(a,p) < d(a,n) < d(a,p) + \text{margin}`; where no negative lies in that band, the
    hardest (closest) negative is used instead.

    Returns:
        :class:`Triplets`, one per (anchor, positive) pair of an anchor that has a negative, in
        lexicographic (anchor, positive) order.

    Reference: Schroff, Kalenichenko & Philbin, "FaceNet" (CVPR 2015), section 3.2. The fallback
    differs from TensorFlow Addons' ``triplet_semihard_loss`` (which takes the closest negative
    farther than the positive, beyond the margin if need be, so such anchors often give loss 0)
    and from pytorch-metric-learning's miner (which drops such anchors): the hardest negative
    keeps every anchor with a negative training.
    """
    x, labels, metric, p = _check(embeddings, labels, metric, p)
    margin = check_nonnegative("margin", margin)
    with torch.no_grad():
        dist = distance_matrix(x, None, metric, p)
        return semi_hard_from_distances(dist, labels, margin)


def mine_pairs(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    strategy: str = "hard",
    epsilon: float = 0.1,
    metric: str = "euclidean",
    p: float = 2.0,
) -> Pairs:
    r"""Select positive and negative pairs: ``"all"``, ``"hard"`` or ``"easy"`` ones.

    Per anchor :math:`a`, with :math:`P_a` its positives and :math:`N_a` its negatives:

    - ``"all"``: every positive pair and every negative pair.
    - ``"hard"``: negatives closer than the farthest positive plus ``epsilon``,
      :math:`d(a,n) < \max_{p\in P_a} d(a,p) + \epsilon`, and positives farther than the closest
      negative minus ``epsilon``, :math:`d(a,p) > \min_{n\in N_a} d(a,n) - \epsilon` (the pair
      mining of the multi-similarity loss, written with distances).
    - ``"easy"``: the complement of ``"hard"`` within each set.

    For ``"hard"``/``"easy"`` an anchor without positives or without negatives yields no pair.

    Returns:
        :class:`Pairs`, each set in lexicographic (anchor, other) order.

    Reference: Wang et al., "Multi-Similarity Loss with General Pair Weighting" (CVPR 2019), eq. 8-9.
    """
    x, labels, metric, p = _check(embeddings, labels, metric, p)
    strategy = check_choice("strategy", strategy, PAIR_STRATEGIES)
    epsilon = check_nonnegative("epsilon", epsilon)
    with torch.no_grad():
        dist = distance_matrix(x, None, metric, p)
        same, different = label_masks(labels)
        keep_pos, keep_neg = pair_masks(dist, same, different, strategy, epsilon)
        a1, pos = keep_pos.nonzero(as_tuple=True)
        a2, neg = keep_neg.nonzero(as_tuple=True)
        return Pairs(a1, pos, a2, neg)


# ---------------------------------------------------------------- building blocks


def _check(embeddings, labels, metric, p):
    x = check_embeddings(embeddings)
    labels = check_labels(labels, x)
    metric, p = check_metric(metric, p)
    return upcast(x).detach(), labels, metric, p


def _empty_triplets(device: torch.device) -> Triplets:
    e = torch.zeros(0, dtype=torch.int64, device=device)
    return Triplets(e, e.clone(), e.clone())


class LabelGroups(NamedTuple):
    """Each sample's group of equal labels, padded to the largest group size ``M``.

    ``members[i, m]`` is the ``m``-th sample (increasing index) with ``labels[i]``'s label, for
    ``m < size[i]`` (``valid``); padding repeats ``i`` itself. ``B×M`` entries: ``B·K`` for a P×K
    batch, at most ``B²``, and no ``B×B`` comparison of labels.
    """

    members: torch.Tensor  # (B, M) int64
    valid: torch.Tensor  # (B, M) bool, True for the real members (i itself included)
    size: torch.Tensor  # (B,) int64

    @property
    def has_positive(self) -> torch.Tensor:
        return self.size >= 2

    @property
    def has_negative(self) -> torch.Tensor:
        return self.size < self.size.numel()

    @property
    def partners(self) -> torch.Tensor:
        """``valid`` without ``i`` itself: the positives of each anchor."""
        self_index = torch.arange(self.size.numel(), device=self.size.device)[:, None]
        return self.valid & (self.members != self_index)


def label_groups(labels: torch.Tensor) -> LabelGroups:
    b = labels.numel()
    sorted_labels, order = labels.sort(stable=True)  # grouped by label, increasing index
    _, group_sorted, counts = torch.unique_consecutive(
        sorted_labels, return_inverse=True, return_counts=True
    )
    group = torch.empty_like(group_sorted).scatter_(0, order, group_sorted)
    start = (torch.cumsum(counts, 0) - counts)[group]
    size = counts[group]
    slot = torch.arange(int(counts.max()) if b else 0, device=labels.device)
    valid = slot[None, :] < size[:, None]
    position = (start[:, None] + slot[None, :]).clamp_max_(max(b - 1, 0))
    members = torch.where(valid, order[position], torch.arange(b, device=labels.device)[:, None])
    return LabelGroups(members, valid, size)


def same_label_pairs(
    labels: torch.Tensor, groups: LabelGroups | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ordered pair ``(i, j)``, ``i != j``, of equal labels, in lexicographic order."""
    g = label_groups(labels) if groups is None else groups
    i, slot = g.partners.nonzero(as_tuple=True)
    return i, g.members[i, slot]  # members are increasing along a row: lexicographic


def batch_hard_from_embeddings(
    x: torch.Tensor, labels: torch.Tensor, metric: str, p: float
) -> Triplets:
    """Batch-hard indices from (detached, compute-dtype) embeddings.

    One ``B×B`` ordering matrix. The hardest positive is a max over each anchor's ``M`` group
    members only; the hardest negative a row min after writing ``+inf`` over the group members.
    """
    if x.shape[0] == 0:
        return _empty_triplets(x.device)
    return _BATCH_HARD_MINING(x, labels, metric, p)


def _batch_hard_formula(x: torch.Tensor, labels: torch.Tensor, metric: str, p: float) -> Triplets:
    with torch.no_grad():
        g = label_groups(labels)
        scores = ordering_matrix(x, metric, p)  # a fresh tensor: modified in place below
        # -inf on the diagonal excludes the anchor itself, and the padding (which repeats it).
        values = scores.fill_diagonal_(-math.inf).gather(1, g.members)
        hardest_pos = g.members.gather(1, values.argmax(1, keepdim=True)).squeeze(1)
        hardest_neg = scores.scatter_(1, g.members, math.inf).min(1).indices
        anchors = (g.has_positive & g.has_negative).nonzero(as_tuple=True)[0]
        return Triplets(anchors, hardest_pos[anchors], hardest_neg[anchors])


def _batch_hard_kernel(x: torch.Tensor, labels: torch.Tensor, metric: str, p: float) -> Triplets:
    pos, neg = batch_hard_kernel(x, labels, metric, p)
    anchors = ((pos >= 0) & (neg >= 0)).nonzero(as_tuple=True)[0]
    return Triplets(anchors, pos[anchors], neg[anchors])


# The mining step of batch-hard triplet losses: the fused Triton kernel on CUDA, else PyTorch.
_BATCH_HARD_MINING = Backends(
    "batch_hard_mining",
    formula=_batch_hard_formula,
    kernel=_batch_hard_kernel,
    refuses={"kernel": batch_hard_refuses},
)
batch_hard_triplets.backends = _BATCH_HARD_MINING


def positive_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(anchor, positive) index pairs of anchors that also have a negative, lexicographic."""
    g = label_groups(labels)
    i, slot = (g.partners & g.has_negative[:, None]).nonzero(as_tuple=True)
    return i, g.members[i, slot]


def pair_chunks(num_pairs: int, batch: int) -> Iterator[slice]:
    """Slices over the pairs such that ``rows × B`` stays under :data:`CHUNK_ELEMENTS`."""
    rows = max(1, CHUNK_ELEMENTS // max(batch, 1))
    for start in range(0, num_pairs, rows):
        yield slice(start, min(start + rows, num_pairs))


def negative_distances(dist: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """A copy of ``dist`` with ``+inf`` on equal labels (so a non-negative is never chosen)."""
    return dist.clone().scatter_(1, label_groups(labels).members, math.inf)


def batch_all_from_distances(
    dist: torch.Tensor, labels: torch.Tensor, margin: float | None
) -> Triplets:
    """Valid triplets with ``d_ap - d_an + margin > 0`` (all valid ones if ``margin`` is None)."""
    a, pos = positive_pairs(labels)
    if a.numel() == 0:
        return _empty_triplets(dist.device)
    d_an = negative_distances(dist, labels)
    threshold = dist[a, pos] + (math.inf if margin is None else margin)
    parts = []
    for sl in pair_chunks(a.numel(), dist.shape[0]):
        rows = a[sl]
        r, n = (d_an[rows] < threshold[sl, None]).nonzero(as_tuple=True)
        parts.append((rows[r], pos[sl][r], n))
    return Triplets(*(torch.cat(t) for t in zip(*parts, strict=True)))


def semi_hard_from_distances(dist: torch.Tensor, labels: torch.Tensor, margin: float) -> Triplets:
    """One negative per (anchor, positive) pair: the closest semi-hard, else the hardest."""
    a, pos = positive_pairs(labels)
    if a.numel() == 0:
        return _empty_triplets(dist.device)
    d_an = negative_distances(dist, labels)
    hardest = d_an.min(1).indices  # per anchor
    d_ap = dist[a, pos]
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
    chosen = []
    for sl in pair_chunks(a.numel(), dist.shape[0]):
        rows = a[sl]
        row_d = d_an[rows]
        # +inf (not a negative) is never "farther" in a way that counts: its min stays inf.
        closest_farther = torch.where(row_d > d_ap[sl, None], row_d, inf).min(1)
        in_band = closest_farther.values < d_ap[sl] + margin
        chosen.append(torch.where(in_band, closest_farther.indices, hardest[rows]))
    return Triplets(a, pos, torch.cat(chosen))


def pair_masks(
    dist: torch.Tensor,
    same: torch.Tensor,
    different: torch.Tensor,
    strategy: str,
    epsilon: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keep_positive, keep_negative)`` ``(B, B)`` masks of :func:`mine_pairs`."""
    if strategy == "all" or dist.numel() == 0:
        return same, different
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
    farthest_pos = torch.where(same, dist, -inf).amax(1, keepdim=True)
    closest_neg = torch.where(different, dist, inf).amin(1, keepdim=True)
    valid = (same.any(1) & different.any(1))[:, None]
    hard_pos = same & (dist > closest_neg - epsilon)
    hard_neg = different & (dist < farthest_pos + epsilon)
    if strategy == "hard":
        return hard_pos & valid, hard_neg & valid
    return same & ~hard_pos & valid, different & ~hard_neg & valid
