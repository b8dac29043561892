"""Batch-hard triplet loss on top of the mining kernel (importable without triton).

``batch_hard_triplet_loss`` mines with the kernel on CUDA (or with a ``B x B`` PyTorch formula
elsewhere), then computes the loss from the mined ``(anchor, positive, negative)`` rows only, so
autograd's gradient is exact and costs O(B·D).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import dispatch

METRICS = ("euclidean", "squared_euclidean", "cosine")


def mine_batch_hard_torch(
    x: torch.Tensor, labels: torch.Tensor, unit_norms: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same mining with a ``B x B`` distance matrix (the PyTorch path); ``unit_norms``: see
    :func:`losskit.kernels.triplet.function.triton_batch_hard_mine`."""
    b = x.shape[0]
    xf = x.float()
    sq = torch.ones_like(xf[:, 0]) if unit_norms else xf.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * xf @ xf.t()).clamp_min(0.0)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(b, dtype=torch.bool, device=x.device)
    dp = torch.where(same & ~eye, d2, torch.full_like(d2, -1.0))
    dn = torch.where(~same, d2, torch.full_like(d2, float("inf")))
    pmax, pidx = dp.max(1) if b else (dp.new_zeros(0), labels.new_zeros(0))
    nmin, nidx = dn.min(1) if b else (dn.new_zeros(0), labels.new_zeros(0))
    pidx = torch.where(pmax >= 0, pidx, -1)
    nidx = torch.where(torch.isfinite(nmin), nidx, -1)
    return pidx.long(), nidx.long()


def maybe_batch_hard_mining(
    embeddings: torch.Tensor, labels: torch.Tensor, metric: str = "euclidean"
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Hardest positive/negative indices by the kernel, or ``None`` for the PyTorch path.

    ``metric`` ``"euclidean"``/``"squared_euclidean"`` mine on the embeddings, ``"cosine"`` on
    the L2-normalised embeddings with unit norms assumed (``2 - 2 cos``: the order of cosine
    distance, also for a zero embedding, whose cosine distance is 1 to every other). ``-1`` marks an anchor
    with no positive or no negative.
    """
    if dispatch.get_kernel_mode() == "never":
        return None
    problem = dispatch.first_problem(
        dispatch.dtype_problem("embeddings", embeddings),
        None if metric in METRICS else f"metric {metric!r} is not one of {METRICS}",
        None if embeddings.dim() == 2 else "embeddings must be (B, D)",
    )
    if not dispatch.select("batch_hard_mining", (embeddings, labels), problem):
        return None
    from .function import triton_batch_hard_mine

    x = embeddings.detach()
    if metric == "cosine":
        x = F.normalize(x.float(), dim=1)
    return triton_batch_hard_mine(x, labels, unit_norms=metric == "cosine")


def _pair_distance(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "cosine":
        return 1.0 - F.cosine_similarity(a, b, dim=1)
    d2 = (a - b).pow(2).sum(1)
    if metric == "squared_euclidean":
        return d2
    # clamp before the root: a finite gradient at zero distance (duplicate embeddings).
    return d2.clamp_min(1e-12).sqrt()


def batch_hard_triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.2,
    metric: str = "euclidean",
    soft_margin: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Batch-hard triplet loss: ``max(d(a, p*) - d(a, n*) + margin, 0)`` per anchor.

    ``p*`` is the farthest sample of the anchor's label, ``n*`` the closest of another label
    (softplus of the difference with ``soft_margin``). Anchors with no positive or no negative
    are skipped; ``mean`` averages over the other anchors and is 0 (zero gradient) when none is
    left; ``none`` gives 0 for skipped anchors. Mining uses the kernel on CUDA; the loss is
    computed on the mined rows by PyTorch, so the gradient is exact.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    mined = maybe_batch_hard_mining(embeddings, labels, metric)
    if mined is None:
        x = embeddings.detach().float()
        cosine = metric == "cosine"
        mined = mine_batch_hard_torch(F.normalize(x, dim=1) if cosine else x, labels, cosine)
    pos, neg = mined
    valid = (pos >= 0) & (neg >= 0)
    x = embeddings
    d_ap = _pair_distance(x, x[pos.clamp_min(0)], metric)
    d_an = _pair_distance(x, x[neg.clamp_min(0)], metric)
    diff = d_ap - d_an
    per_anchor = F.softplus(diff) if soft_margin else F.relu(diff + margin)
    per_anchor = torch.where(valid, per_anchor, per_anchor.new_zeros(()))
    if reduction == "none":
        return per_anchor
    total = per_anchor.sum()
    if reduction == "sum":
        return total
    return total / valid.sum().clamp_min(1)
