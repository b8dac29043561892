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
    extra = None
    if negatives is not None:
        neg = upcast(negatives)
        if normalize:
            neg = F.normalize(neg, dim=-1)
        if neg.dim() == 3:  # (N, M, D): each query's own negatives, local to its rank
            extra = torch.einsum("nd,nmd->nm", q, neg) / temperature
        else:  # (M, D): a bank shared by every query, gathered like the keys
            if ranks is not None:
                neg = _dist.gather(neg, _dist.ranks_of(neg.shape[0], neg.device, group))
            extra = (q @ neg.T) / temperature
    if chunk is not None:  # in-batch negatives only (checked): CLIP's block-wise rows
        scale = torch.tensor(1.0 / temperature, dtype=q.dtype, device=q.device)
        if symmetric and ranks is None:  # one square matrix, both directions per block
            rows = row_losses(q, k, scale, None, 0, "softmax", both=True, chunk=chunk)
        else:
            rows = row_losses(q, all_k, scale, None, offset, "softmax", chunk=chunk)
            if symmetric:
                rows = 0.5 * (
                    rows + row_losses(k, all_q, scale, None, offset, "softmax", chunk=chunk)
                )
    else:
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
        chunk_size: rows per block for in-batch negatives without ``labels`` or ``negatives``
            (the block-wise path of :func:`clip_loss`: the ``N × N`` matrix never exists;
            first-order only), or ``None``.
        reduction: ``"none"`` (``(N,)`` per query, the global batch), ``"mean"``, ``"sum"``.

    Returns:
        A scalar, or ``(N,)``; the dtype of ``query``.

    Edge cases: a query whose keys all share its label (and no explicit negative) has loss 0;
    an empty batch gives NaN for ``mean``.

    Example:
        >>> q, k = torch.randn(8, 16, requires_grad=True), torch.randn(8, 16)
        >>> losskit.contrastive.info_nce_loss(q, k, negatives=torch.randn(32, 16)).backward()

    References: van den Oord, Li & Vinyals, "Representation Learning with Contrastive Predictive
    Coding" (2018); Chen et al., SimCLR (NT-Xent, ICML 2020). Peers: pytorch-metric-learning's
    ``NTXentLoss(temperature)(query, labels, ref_emb=key, ref_labels=labels.clone())`` (a copy:
    given ``labels`` itself it drops the pairs ``(i, i)``) is this loss with
    ``labels`` except that it averages over positive *pairs*, not over queries (the same when
    every query has as many positives, e.g. P×K batches or ``labels=arange``); its
    ``NTXentLoss(embeddings, labels)`` on ``cat([q, k])`` is SimCLR's form, which also counts
    the other queries as negatives. sentence-transformers' ``MultipleNegativesRankingLoss(scale)``
    is ``temperature=1/scale`` (default 0.05) with hard negatives as a shared bank (every anchor
    sees every hard negative of the batch), and ``MultipleNegativesSymmetricRankingLoss`` is
    ``symmetric=True`` without negatives.
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
    if chunk is not None and (labels is not None or negatives is not None):
        raise ValueError(
            "chunk_size computes in-batch negatives only: pass labels=None and negatives=None "
            "with it, or chunk_size=None"
        )
    reduction = check_reduction(reduction)
    return _INFO_NCE(
        q, k, negatives, temperature, symmetric, labels, normalize, group, chunk, reduction
    )


info_nce_loss.backends = _INFO_NCE
