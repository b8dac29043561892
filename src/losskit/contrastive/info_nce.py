"""InfoNCE / NT-Xent with in-batch negatives, explicit negatives and label-defined positives."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .._checks import check_bool, check_floating, check_same_device
from .._dispatch import Backends
from .._precision import upcast
from .._reduction import check_reduction
from . import _dist
from ._blocks import row_losses
from ._common import check_chunk_size, check_group, check_labels, check_pair, check_temperature

__all__ = ["info_nce_loss"]


def _rows(x, keys, y_rows, y_keys, offset, extra, temperature):
    """Per-row InfoNCE of ``x`` against ``keys`` (positives: ``offset + i``, or equal labels)."""
    sim = (x @ keys.T) / temperature
    n = x.shape[0]
    if y_rows is None:
        logits = sim if extra is None else torch.cat([sim, extra], 1)
        target = torch.arange(n, device=x.device) + offset
        return F.cross_entropy(logits, target, reduction="none")
    positive = y_rows[:, None] == y_keys[None, :]
    negatives = torch.where(positive, -torch.inf, sim)
    if extra is not None:
        negatives = torch.cat([negatives, extra], 1)
    # A row without any negative has neg_lse = -inf, so its pairs' losses are exactly 0; the NaN
    # that logsumexp's backward makes there falls on masked entries, which where() drops.
    neg_lse = torch.logsumexp(negatives, 1, keepdim=True)
    per_pair = torch.logaddexp(sim, neg_lse) - sim  # -log(e^{s_p} / (e^{s_p} + sum_n e^{s_n}))
    per_pair = torch.where(positive, per_pair, 0.0)
    return per_pair.sum(1) / positive.sum(1)


def _extra_logits(q, neg):
    """``(N, M)`` dot products of each query with its own negatives or with the bank."""
    return torch.einsum("nd,nmd->nm", q, neg) if neg.dim() == 3 else q @ neg.T


def _block_rows(x, keys, y_rows, y_keys, offset, neg, scale, both, chunk):
    """The same rows block by block (:class:`._blocks.RowBlocks`): a shared bank joins the
    columns (label-less negatives), per-query negatives come in as ``(N, M)`` extra logits;
    ``both``: the square in-batch matrix, both directions in one pass."""
    extra = None
    if neg is not None and neg.dim() == 3:
        extra = _extra_logits(x, neg) * scale
    elif neg is not None:
        keys = torch.cat([keys, neg])
    if y_rows is None:
        return row_losses(x, keys, scale, None, offset, "softmax", both, chunk, extra=extra)
    return row_losses(
        x, keys, scale, None, offset, "multi", False, chunk, extra=extra, row_y=y_rows, col_y=y_keys
    )


def _info_nce_formula(
    query, key, negatives, temperature, symmetric, labels, normalize, group, chunk, reduction
):
    q, k = upcast(query), upcast(key)
    if normalize:
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    ranks = _dist.ranks_of(q.shape[0], q.device, group)
    if ranks is None:
        all_q, all_k, all_y, offset = q, k, labels, 0
    else:
        d = q.shape[1]
        both = _dist.gather(torch.cat([q, k], 1), ranks)
        all_q, all_k, offset = both[:, :d], both[:, d:], ranks.offset
        all_y = None if labels is None else _dist.gather(labels, ranks, with_grad=False)
    neg = None
    if negatives is not None:
        neg = upcast(negatives)
        if normalize:
            neg = F.normalize(neg, dim=-1)
        if neg.dim() == 2 and ranks is not None:  # a shared bank: gathered like the keys
            neg = _dist.gather(neg, _dist.ranks_of(neg.shape[0], neg.device, group))
    if chunk is not None:
        scale = torch.tensor(1.0 / temperature, dtype=q.dtype, device=q.device)
        square = symmetric and ranks is None and labels is None and neg is None
        rows = _block_rows(q, all_k, labels, all_y, offset, neg, scale, square, chunk)
        if symmetric and not square:
            rows = 0.5 * (
                rows + _block_rows(k, all_q, labels, all_y, offset, None, scale, False, chunk)
            )
    else:
        extra = None
        if neg is not None:
            extra = _extra_logits(q, neg) / temperature
        rows = _rows(q, all_k, labels, all_y, offset, extra, temperature)
        if symmetric:
            rows = 0.5 * (rows + _rows(k, all_q, labels, all_y, offset, None, temperature))
    count = q.shape[0] if ranks is None else ranks.total
    return _dist.finish(rows, reduction, ranks, count).to(query.dtype)


_INFO_NCE = Backends("info_nce_loss", formula=_info_nce_formula)


def info_nce_loss(
    query: torch.Tensor,
    key: torch.Tensor,
    *,
    temperature: float = 0.07,
    negatives: torch.Tensor | None = None,
    symmetric: bool = False,
    labels: torch.Tensor | None = None,
    normalize: bool = True,
    group: dist.ProcessGroup | None = None,
    chunk_size: int | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""InfoNCE (NT-Xent): each query picks its key out of the batch's keys and the negatives.

    With cosine similarities (``normalize=True``) :math:`s_{ij} = \hat q_i \cdot \hat k_j / \tau`
    over the global batch, and :math:`u_{im} = \hat q_i \cdot \hat n_m / \tau` for explicit
    negatives, query :math:`i`'s positives are :math:`P_i = \{j : y_j = y_i\}` (with ``labels``)
    or :math:`\{i\}`, and its negatives every other key plus the explicit negatives:

    .. math::
        \ell_i = \frac{1}{|P_i|} \sum_{p \in P_i} -\log
        \frac{e^{s_{ip}}}{e^{s_{ip}} + \sum_{j \notin P_i} e^{s_{ij}} + \sum_m e^{u_{im}}} .

    Without labels this is the cross entropy of row :math:`i` with target :math:`i` (CLIP's
    one direction, sentence-transformers' ``MultipleNegativesRankingLoss``). ``symmetric=True``
    averages it with the key-to-query direction (keys as rows, the batch's queries as columns;
    explicit negatives belong to the query direction only): :math:`\tfrac12(\ell_i + \ell'_i)`.

    Memory: with ``chunk_size=c`` no more than ``c`` rows of the similarity matrix exist at
    once, in the forward and in the backward, so the batch size is bounded by the embeddings,
    not by :math:`N^2`; the value and gradients are those of the plain path (float64: to
    1e-10).

    Across ranks every rank computes its queries' rows against the global keys; the value is the
    global loss on every rank and after DDP averaging every rank holds the single-process
    gradient (:mod:`losskit.distributed`'s convention). Per-query negatives ``(N, M, D)`` stay
    local; a shared bank ``(M, D)`` is gathered like the keys (the global bank is every rank's
    bank: per-example hard negatives). A bank replicated on every rank (a MoCo queue) must be
    passed by one rank only, the others passing ``(0, D)``.

    Args:
        query: ``(N, D)`` floating.
        key: ``(N, D)``; ``key[i]`` is the positive of ``query[i]``.
        temperature: :math:`\tau > 0`.
        negatives: ``(N, M, D)`` per query, or a shared bank ``(M, D)``, or ``None``.
        symmetric: add the key-to-query direction.
        labels: ``(N,)`` integer; queries and keys with equal labels are positives (a key
            carries the label of its query), the rest negatives. ``None``: only the pair.
        normalize: use cosine similarity (L2-normalise every embedding); ``False``: dot products.
        group: the process group (default: the world when one is initialised).
        chunk_size: queries per block (an int ``>= 1``), or ``None`` for the plain autograd
            path. The loss and its gradient are computed ``chunk_size`` rows at a time against
            every key (and the shared bank), keeping one log-sum-exp per row and recomputing
            each block in the backward (the machinery of :func:`clip_loss`): the largest
            temporaries are a few ``chunk_size × (N_global + M)`` blocks, never the
            ``N × N_global`` matrix, for every form (labels, both kinds of negatives,
            ``symmetric``). Per-query negatives still make their ``(N, M)`` logits (``1/D`` of
            the negatives themselves). First-order only (no double backward).
        reduction: ``"none"`` (``(N,)`` per query, the global batch), ``"mean"``, ``"sum"``.

    Returns:
        A scalar, or ``(N,)``; the dtype of ``query``.

    Edge cases: a query whose keys all share its label (and no explicit negative) has loss 0;
    an empty batch gives NaN for ``mean``.

    Example:
        >>> q, k = torch.randn(8, 16, requires_grad=True), torch.randn(8, 16)
        >>> losskit.contrastive.info_nce_loss(q, k, negatives=torch.randn(32, 16)).backward()
        >>> y = torch.tensor([0, 1, 2, 3] * 2)  # label-defined positives, 4 rows per block
        >>> losskit.contrastive.info_nce_loss(q, k, labels=y, chunk_size=4).backward()

    References: van den Oord, Li & Vinyals, "Representation Learning with Contrastive Predictive
    Coding" (2018); Chen et al., SimCLR (NT-Xent, ICML 2020). Peers: pytorch-metric-learning's
    ``NTXentLoss(temperature)(query, labels, ref_emb=key, ref_labels=labels.clone())`` (a copy:
    given ``labels`` itself it drops the pairs ``(i, i)``) is this loss with
    ``labels`` except that it averages over positive *pairs*, not over queries (the same when
    every query has as many positives, e.g. P×K batches or ``labels=arange``); its
    ``NTXentLoss(embeddings, labels)`` on ``cat([q, k])`` is SimCLR's form, which also counts
    the other queries as negatives.

    sentence-transformers' ``MultipleNegativesRankingLoss(model, scale)`` (v5/v6; tested
    against 6.3 to 1e-10, values and gradients, plain and chunked) on ``(anchor, positive,
    negative_1, ..., negative_n)`` columns is
    ``info_nce_loss(anchor, positive, temperature=1/scale,
    negatives=torch.cat([negative_1, ..., negative_n]))``. The conventions: its ``scale`` is
    ``1/temperature`` (its default 20 is ``temperature=0.05``; losskit's default is 0.07); its
    default ``similarity_fct=cos_sim`` is ``normalize=True`` (``dot_score`` with ``scale=1`` is
    ``normalize=False, temperature=1``); its hard negatives are a shared bank: every anchor
    sees the hard negatives of *every* anchor of the batch (``(M, D)`` here, ``M = n B``),
    while losskit's ``(N, M, D)`` form, each query only its own negatives, has no MNRL
    counterpart; ``directions=("query_to_doc", "doc_to_query"),
    partition_mode="per_direction"`` (the classic ``MultipleNegativesSymmetricRankingLoss``)
    is ``symmetric=True`` (the positives against every anchor, hard negatives in the
    query direction only); its ``"query_to_query"``/``"doc_to_doc"`` directions, its
    ``partition_mode="joint"`` over several directions and its ``hardness_mode`` have no
    losskit counterpart; it has no labels (a duplicate in the batch is a false negative: it
    recommends a no-duplicates sampler), where losskit's ``labels`` makes duplicates
    positives; it returns the mean only. With ``gather_across_devices=True`` it returns each
    rank's mean over its own anchors and offsets the targets by ``rank × B_local`` (equal
    local batches assumed); losskit returns the global loss on every rank and takes uneven
    batches.
    """
    q, k = check_pair("query", query, "key", key)
    temperature = check_temperature("temperature", temperature)
    symmetric = check_bool("symmetric", symmetric)
    normalize = check_bool("normalize", normalize)
    if labels is not None:
        labels = check_labels(labels, q.shape[0], q, "query")
    if negatives is not None:
        check_floating("negatives", negatives)
        check_same_device("negatives", negatives, q, "query")
        n, d = q.shape
        ok = (negatives.dim() == 3 and negatives.shape[0] == n and negatives.shape[2] == d) or (
            negatives.dim() == 2 and negatives.shape[1] == d
        )
        if not ok:
            raise ValueError(
                f"negatives must be (N, M, D) = ({n}, M, {d}) per query or a shared bank "
                f"(M, {d}), got shape {tuple(negatives.shape)}"
            )
    check_group(group)
    chunk = check_chunk_size(chunk_size)
    reduction = check_reduction(reduction)
    return _INFO_NCE(
        q, k, negatives, temperature, symmetric, labels, normalize, group, chunk, reduction
    )


info_nce_loss.backends = _INFO_NCE
