"""Retrieval metrics of embeddings (pytorch-metric-learning's ``AccuracyCalculator`` definitions).

Exact k-nearest-neighbour search in plain torch, chunked over the queries and, inside a chunk,
over the references with a running top-k merge: the query × reference score matrix never exists,
so memory is ``O(chunk_size × (reference_chunk_size + K))`` whatever the number of embeddings
(``K`` is the largest number of relevant references of a query, capped at the references).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .._checks import check_int, check_integer, check_same_device
from .._precision import compute_dtype
from ._common import check_choice, check_embeddings

__all__ = [
    "RETRIEVAL_METRICS",
    "SCORES",
    "mean_average_precision_at_r",
    "precision_at_1",
    "r_precision",
    "recall_at_k",
    "retrieval_metrics",
]

RETRIEVAL_METRICS: tuple[str, ...] = (
    "precision_at_1",
    "r_precision",
    "mean_average_precision_at_r",
)
SCORES: tuple[str, ...] = ("euclidean", "cosine", "dot")

# Running top-k rows × K kept per chunk at most: 2^24 (value, index) pairs = 192 MiB.
_MAX_RUNNING = 1 << 24


def retrieval_metrics(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    reference: torch.Tensor | None = None,
    reference_labels: torch.Tensor | None = None,
    *,
    recall_at: Sequence[int] = (),
    metric: str = "euclidean",
    ref_includes_query: bool = False,
    chunk_size: int = 256,
    reference_chunk_size: int = 65536,
) -> dict[str, float]:
    r"""Precision@1, R-precision, mAP@R and recall@k of a query set against a reference set.

    For query :math:`q` let :math:`R_q` be the number of references with its label (the query
    itself not counted) and :math:`\mathrm{rel}_q(i)` whether its :math:`i`-th nearest reference
    has its label. Then (Musgrave, Belongie & Lim 2020, and PML's ``AccuracyCalculator``):

    - ``precision_at_1``: :math:`\mathrm{rel}_q(1)`;
    - ``r_precision``: :math:`\frac{1}{R_q}\sum_{i \le R_q} \mathrm{rel}_q(i)`;
    - ``mean_average_precision_at_r``: :math:`\frac{1}{R_q}\sum_{i \le R_q} P_q(i)\,
      \mathrm{rel}_q(i)` with :math:`P_q(i)` the precision of the first :math:`i`;
    - ``recall_at_{k}`` (each ``k`` of ``recall_at``): whether one of the :math:`k` nearest has
      the label (the recall@k of Oh Song et al. 2016; not one of PML's metrics, it equals
      ``precision_at_1`` for ``k=1``);

    each averaged over the queries with :math:`R_q \ge 1` (PML leaves out such "lone" queries
    too); NaN when none is left.

    The search is exact (no approximate index): scores are computed chunk by chunk in the
    embeddings' dtype (float32 for half inputs) and the top :math:`K` kept by a running merge.
    Euclidean ranks by :math:`2\,q\cdot r - \lVert r\rVert^2` (the Gram form, as faiss), so two
    references whose distances differ by less than the rounding of that form may swap.
    Ties are broken deterministically: among equal scores the reference with the smaller index
    ranks first. PML's order among ties is whatever faiss or ``torch.topk`` returns (unspecified),
    so the two can differ only where scores tie exactly at a rank that matters.

    Args:
        query: ``(Q, D)`` floating.
        query_labels: ``(Q,)`` integer.
        reference: ``(N, D)`` floating, same dtype and device; ``None``: the queries against
            themselves, each query's own entry excluded (PML's default).
        reference_labels: ``(N,)`` integer; required with ``reference``.
        recall_at: the ``k`` of the recall@k values to compute (positive ints).
        metric: ``"euclidean"`` (PML's default, faiss L2), ``"cosine"`` or ``"dot"``
            (inner product).
        ref_includes_query: the first ``Q`` references are the queries (PML's flag): reference
            ``i`` is excluded for query ``i``.
        chunk_size: queries per chunk.
        reference_chunk_size: references per block of the running merge.

    Returns:
        ``{"precision_at_1": ..., "r_precision": ..., "mean_average_precision_at_r": ...,
        "recall_at_k": ...}`` as Python floats.

    Edge cases: NaN or infinite embeddings give NaN for every metric; an empty query set gives
    NaN.

    Example:
        >>> x, y = torch.randn(100, 16), torch.arange(10).repeat(10)
        >>> m = losskit.metric.retrieval_metrics(x, y, recall_at=(1, 5))
        >>> sorted(m)
        ['mean_average_precision_at_r', 'precision_at_1', 'r_precision', 'recall_at_1', 'recall_at_5']

    References: Musgrave, Belongie & Lim, "A Metric Learning Reality Check" (ECCV 2020), for
    MAP@R; pytorch-metric-learning 2.9 ``AccuracyCalculator``.
    """
    q, yq, r, yr, self_match = _check(
        query, query_labels, reference, reference_labels, ref_includes_query
    )
    metric = check_choice("metric", metric, SCORES)
    recall_at = _check_recall_at(recall_at)
    chunk_size = _positive_int("chunk_size", chunk_size)
    reference_chunk_size = _positive_int("reference_chunk_size", reference_chunk_size)
    names = [*RETRIEVAL_METRICS, *(f"recall_at_{k}" for k in recall_at)]
    if q.shape[0] == 0 or not (bool(torch.isfinite(q).all()) and bool(torch.isfinite(r).all())):
        return dict.fromkeys(names, math.nan)
    with torch.no_grad():
        sums, counted = _search_and_count(
            q, yq, r, yr, self_match, metric, recall_at, chunk_size, reference_chunk_size
        )
    return {n: (float(sums[i]) / counted if counted else math.nan) for i, n in enumerate(names)}


def precision_at_1(query, query_labels, reference=None, reference_labels=None, **kwargs) -> float:
    """Fraction of queries whose nearest reference has their label; see :func:`retrieval_metrics`.

    Example:
        >>> x, y = torch.randn(40, 8), torch.arange(4).repeat(10)
        >>> 0.0 <= losskit.metric.precision_at_1(x, y) <= 1.0
        True
    """
    return retrieval_metrics(query, query_labels, reference, reference_labels, **kwargs)[
        "precision_at_1"
    ]


def r_precision(query, query_labels, reference=None, reference_labels=None, **kwargs) -> float:
    """Mean precision of the first :math:`R_q` neighbours; see :func:`retrieval_metrics`."""
    return retrieval_metrics(query, query_labels, reference, reference_labels, **kwargs)[
        "r_precision"
    ]


def mean_average_precision_at_r(
    query, query_labels, reference=None, reference_labels=None, **kwargs
) -> float:
    """MAP@R (Musgrave et al. 2020); see :func:`retrieval_metrics`."""
    return retrieval_metrics(query, query_labels, reference, reference_labels, **kwargs)[
        "mean_average_precision_at_r"
    ]


def recall_at_k(
    query, query_labels, reference=None, reference_labels=None, *, k: int = 1, **kwargs
) -> float:
    """Fraction of queries with a same-label reference among their ``k`` nearest; see
    :func:`retrieval_metrics`."""
    k = _check_recall_at((k,))[0]
    out = retrieval_metrics(
        query, query_labels, reference, reference_labels, recall_at=(k,), **kwargs
    )
    return out[f"recall_at_{k}"]


# ---------------------------------------------------------------- the search


def _search_and_count(q, yq, r, yr, self_match, metric, recall_at, chunk_size, ref_chunk):
    dtype = torch.promote_types(compute_dtype(q.dtype), compute_dtype(r.dtype))
    q, r = q.to(dtype), r.to(dtype)
    if metric == "cosine":
        q, r = F.normalize(q, dim=1), F.normalize(r, dim=1)
    # Euclidean: rank by 2 q.r - |r|^2, which orders like -|q - r| (|q|^2 is constant per query).
    r_sq = (r * r).sum(1) if metric == "euclidean" else None
    relevant_count = _relevant_counts(yq, yr) - int(self_match)
    # Lone queries (no relevant reference) count in no average: they are not searched at all.
    searched = (relevant_count > 0).nonzero().squeeze(1)
    available = r.shape[0] - int(self_match)
    sums = torch.zeros(3 + len(recall_at), dtype=torch.float64, device=q.device)
    for start in range(0, searched.numel(), chunk_size):
        rows = searched[start : start + chunk_size]
        counts = relevant_count[rows]
        k = min(max(int(counts.max()), max(recall_at, default=1)), available)
        step = max(1, min(chunk_size, _MAX_RUNNING // k))  # bounds the running top-k too
        for sub in range(0, rows.numel(), step):
            part = rows[sub : sub + step]
            idx = _top_k(q[part], part if self_match else None, r, r_sq, k, ref_chunk)
            sums += _sums(yr[idx] == yq[part, None], relevant_count[part], recall_at)
    return sums, searched.numel()


def _top_k(qc, own, r, r_sq, k, ref_chunk):
    """Indices ``(rows, k)`` of each query's ``k`` best references, ties to the smaller index.

    ``own``: the queries' own reference indices, excluded (or None).
    """
    best_v = qc.new_empty(qc.shape[0], 0)
    best_i = torch.empty(qc.shape[0], 0, dtype=torch.int64, device=qc.device)
    for start in range(0, r.shape[0], ref_chunk):
        block_r = r[start : start + ref_chunk]
        if r_sq is None:
            scores = qc @ block_r.T
        else:
            scores = torch.addmm(-r_sq[None, start : start + ref_chunk], qc, block_r.T, alpha=2.0)
        if own is not None:  # the query's own entry, where this block holds it
            inside = ((own >= start) & (own < start + scores.shape[1])).nonzero().squeeze(1)
            scores[inside, own[inside] - start] = -math.inf
        v, i = _block_top(scores, min(k, scores.shape[1]))
        # Running candidates come from earlier (smaller-index) blocks: a stable sort by score
        # keeps them first among equal scores, so the order stays (score desc, index asc).
        v = torch.cat([best_v, v], 1)
        i = torch.cat([best_i, i + start], 1)
        order = torch.sort(v, dim=1, descending=True, stable=True).indices[:, :k]
        best_v, best_i = v.gather(1, order), i.gather(1, order)
    return best_i


def _block_top(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` of each row, in (score desc, column asc) order, exactly."""
    if k >= scores.shape[1]:
        top = torch.sort(scores, dim=1, descending=True, stable=True)
        return top.values, top.indices
    # One more than needed: the top-k set is ambiguous only where the k-th and (k+1)-th tie,
    # and topk's choice among ties is unspecified; those rows take a stable sort instead.
    v, i = torch.topk(scores, k + 1, dim=1)
    tied = (v[:, k - 1] == v[:, k]).nonzero().squeeze(1)
    v, i = v[:, :k], i[:, :k]
    if tied.numel():
        exact = torch.sort(scores[tied], dim=1, descending=True, stable=True)
        v[tied], i[tied] = exact.values[:, :k], exact.indices[:, :k]
    # Within the chosen set, equal scores in column order: sort by column, then stably by score.
    by_col = i.sort(dim=1)
    v, i = v.gather(1, by_col.indices), by_col.values
    order = torch.sort(v, dim=1, descending=True, stable=True).indices
    return v.gather(1, order), i.gather(1, order)


def _relevant_counts(yq: torch.Tensor, yr: torch.Tensor) -> torch.Tensor:
    """Number of references with each query's label."""
    values, counts = torch.unique(yr, return_counts=True)
    pos = torch.searchsorted(values, yq).clamp_max(max(values.numel() - 1, 0))
    if values.numel() == 0:
        return torch.zeros_like(yq)
    return torch.where(values[pos] == yq, counts[pos], 0)


def _sums(rel: torch.Tensor, big_r: torch.Tensor, recall_at: tuple[int, ...]) -> torch.Tensor:
    """Sums over the (non-lone) queries of a chunk of each metric, from ``rel (rows, K)``."""
    rank = torch.arange(1, rel.shape[1] + 1, device=rel.device)
    hits = rel & (rank[None, :] <= big_r[:, None])  # relevant and within the first R
    r_f = big_r.to(torch.float64)
    precision_at = hits.cumsum(1).to(torch.float64) / rank
    out = [
        rel[:, 0].to(torch.float64).sum(),
        (hits.sum(1) / r_f).sum(),
        ((precision_at * hits).sum(1) / r_f).sum(),
    ]
    out += [rel[:, :kk].any(1).to(torch.float64).sum() for kk in recall_at]
    return torch.stack(out)


# ---------------------------------------------------------------- checks


def _check(query, query_labels, reference, reference_labels, ref_includes_query):
    q = check_embeddings(query, "query")
    yq = _labels(query_labels, q, "query_labels", "query")
    if not isinstance(ref_includes_query, bool):
        raise TypeError(
            f"ref_includes_query must be a bool, got {type(ref_includes_query).__name__}"
        )
    if reference is None:
        if reference_labels is not None:
            raise ValueError("reference_labels given without reference")
        return q, yq, q, yq, True
    r = check_embeddings(reference, "reference")
    if reference_labels is None:
        raise ValueError("reference_labels is required with reference")
    yr = _labels(reference_labels, r, "reference_labels", "reference")
    if r.shape[1] != q.shape[1] or r.dtype != q.dtype:
        raise ValueError(
            f"reference must have query's feature size and dtype ({q.shape[1]}, {q.dtype}), "
            f"got ({r.shape[1]}, {r.dtype})"
        )
    check_same_device("reference", r, q, "query")
    if ref_includes_query and r.shape[0] < q.shape[0]:
        raise ValueError(
            f"ref_includes_query=True needs the {q.shape[0]} queries as the first references, "
            f"but reference has {r.shape[0]} rows"
        )
    return q, yq, r, yr, ref_includes_query


def _labels(labels, x, name, of):
    t = check_integer(name, labels)
    if t.dim() != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} must be a 1-D tensor with one label per {of} row ({x.shape[0]},), "
            f"got shape {tuple(t.shape)}"
        )
    check_same_device(name, t, x, of)
    return t


def _check_recall_at(recall_at) -> tuple[int, ...]:
    if isinstance(recall_at, int) or not isinstance(recall_at, Sequence):
        raise TypeError(f"recall_at must be a sequence of ints, got {type(recall_at).__name__}")
    return tuple(_positive_int("recall_at", k) for k in recall_at)


def _positive_int(name: str, value: object) -> int:
    v = check_int(name, value)
    if v < 1:
        raise ValueError(f"{name} must be an int >= 1, got {v}")
    return v
