"""Triplet loss with online mining (batch-hard, batch-all, semi-hard) in O(B²) memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._autograd import functorch_active
from .._checks import check_bool
from .._precision import upcast
from .._reduction import EMPTY_ZERO, check_reduction, reduce
from ._common import (
    check_choice,
    check_embeddings,
    check_labels,
    check_metric,
    check_nonnegative,
    nan_if_nonfinite,
)
from .distances import distance_matrix, paired_distance
from .miners import (
    batch_all_from_distances,
    batch_hard_from_embeddings,
    negative_distances,
    pair_chunks,
    positive_pairs,
    semi_hard_from_distances,
)

__all__ = ["MININGS", "triplet_loss"]

MININGS: tuple[str, ...] = ("batch_hard", "batch_all", "semi_hard")


def triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.2,
    mining: str = "batch_hard",
    metric: str = "euclidean",
    p: float = 2.0,
    soft_margin: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Triplet loss over the triplets mined inside a labelled batch.

    Per mined triplet :math:`(a, p, n)` with :math:`\delta = d(a,p) - d(a,n)`:
    :math:`\ell = [\delta + m]_+` (hinge), or :math:`\ell = \log(1 + e^{\delta + m})` with
    ``soft_margin=True`` (the paper's soft margin is ``margin=0``).

    Mining (valid triplet: :math:`y_p = y_a`, :math:`p \ne a`, :math:`y_n \ne y_a`):

    - ``"batch_hard"``: per anchor the farthest positive and the closest negative
      (:func:`batch_hard_triplets`), mined on a ``B×B`` matrix without gradient. The two
      distances are then recomputed from the embedding differences (for ``"euclidean"`` the
      norm of the difference: exact, with a gradient of norm 1, and 0 at zero distance), so the
      backward pass touches ``2·B`` rows, not the whole distance matrix.
    - ``"batch_all"``: every valid triplet. ``mean`` averages over the triplets with a positive
      loss (all of them with ``soft_margin``), as "In Defense of the Triplet Loss"; ``sum`` adds
      all of them. For ``mean``/``sum`` the loss and its gradient are accumulated over chunks of
      (anchor, positive) pairs without listing the triplets: memory ``O(B²)``, work
      ``O(#positive pairs · B)``. ``none`` lists them (``O(#triplets)`` memory).
    - ``"semi_hard"``: per (anchor, positive) pair the closest negative with
      :math:`d(a,p) < d(a,n) < d(a,p) + m`, else the closest negative (:func:`semi_hard_triplets`).

    ``batch_all`` and ``semi_hard`` differentiate through the distance matrix of
    :func:`pairwise_distance_matrix` (Gram form for ``"euclidean"``).

    Args:
        embeddings: ``(B, D)`` floating.
        labels: ``(B,)`` integer identity labels (any values; equal means same identity).
        margin: :math:`m \ge 0`.
        mining: ``"batch_hard" | "batch_all" | "semi_hard"``.
        metric, p: the distance, see :func:`pairwise_distance_matrix`.
        soft_margin: softplus instead of the hinge.
        reduction: ``"none"``: one loss per mined triplet, shape ``(T,)``, in the miner's order
            (for ``batch_all``: the triplets with a positive loss, all valid ones with
            ``soft_margin``); ``"mean"``: their mean (see ``batch_all`` above); ``"sum"``.

    Returns:
        A scalar, or ``(T,)`` for ``reduction="none"``; the dtype of ``embeddings``.

    Edge cases: anchors without a positive or a negative are skipped. With no valid triplet
    (an empty batch, one identity, all identities distinct) ``mean`` and ``sum`` are 0 and
    ``none`` is empty, with a zero gradient (never NaN), still attached to the graph. At the
    hinge's kink (:math:`\delta + m = 0` exactly) the gradient is 0.

    Example:
        >>> x = torch.randn(32, 64, requires_grad=True)
        >>> labels = torch.arange(8).repeat_interleave(4)  # P=8 identities x K=4
        >>> losskit.metric.triplet_loss(x, labels, margin=0.3, mining="batch_all").backward()

    References: Schroff et al., "FaceNet" (2015); Hermans, Beyer & Leibe, "In Defense of the
    Triplet Loss for Person Re-Identification" (2017).
    """
    x = check_embeddings(embeddings)
    labels = check_labels(labels, x)
    margin = check_nonnegative("margin", margin)
    mining = check_choice("mining", mining, MININGS)
    metric, p = check_metric(metric, p)
    soft_margin = check_bool("soft_margin", soft_margin)
    reduction = check_reduction(reduction)
    xc = upcast(x)

    if mining == "batch_hard":
        t = batch_hard_from_embeddings(xc.detach(), labels, metric, p)
        # Both distances from one gather (index_select: its backward is one index_add).
        n = t.anchor.numel()
        # unbind, not slicing: each slice's backward would allocate and copy a full-size zero.
        idx = torch.cat([t.anchor, t.anchor, t.positive, t.negative])
        first, second = xc.index_select(0, idx).view(2, 2 * n, xc.shape[1]).unbind(0)
        d_ap, d_an = paired_distance(first, second, metric, p).view(2, n).unbind(0)
        out = _reduce(_hinge(d_ap - d_an, margin, soft_margin), reduction)
    else:
        dist = distance_matrix(xc, None, metric, p)
        # Under torch.func the listing path below: the Function's forward mines with
        # data-dependent shapes, and computes its gradient in a way transforms cannot follow.
        if mining == "batch_all" and reduction != "none" and not functorch_active():
            out = _BatchAllTriplet.apply(dist, labels, margin, soft_margin, reduction == "mean")
        else:
            if mining == "semi_hard":
                t = semi_hard_from_distances(dist.detach(), labels, margin)
            else:
                t = batch_all_from_distances(dist.detach(), labels, None if soft_margin else margin)
            delta = dist[t.anchor, t.positive] - dist[t.anchor, t.negative]
            out = _reduce(_hinge(delta, margin, soft_margin), reduction)
    return nan_if_nonfinite(out, xc).to(x.dtype)


def _hinge(delta: torch.Tensor, margin: float, soft: bool) -> torch.Tensor:
    # relu, not clamp_min: zero gradient at the kink, as the batch-all accumulation below.
    return F.softplus(delta + margin) if soft else F.relu(delta + margin)


def _reduce(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    """``mean`` of no triplet is 0 (not NaN): the sum of an empty, graph-attached tensor."""
    return reduce(losses, reduction, empty=EMPTY_ZERO)


class _BatchAllTriplet(torch.autograd.Function):
    """Batch-all ``mean``/``sum`` from the distance matrix, in O(B²) memory.

    The forward pass loops over chunks of (anchor, positive) pairs; for each pair the row of
    anchor-negative distances gives the losses of all its triplets. Autograd would keep every
    chunk for the backward pass (``O(B³)`` in total), so the gradient with respect to the
    distance matrix is accumulated during the forward pass instead: for the hinge,
    ``dL/d d(a,p)`` is the number of active triplets through (a, p) and ``dL/d d(a,n)`` minus the
    number through (a, n); for the soft margin the same sums of ``sigmoid(delta + m)``.
    """

    @staticmethod
    def forward(ctx, dist, labels, margin, soft, mean):  # type: ignore[override]
        needs_grad = ctx.needs_input_grad[0]
        ctx.soft = soft
        a, pos = positive_pairs(labels)
        d_an = negative_distances(dist, labels)  # +inf where not a negative: v = -inf there
        threshold = dist[a, pos] + margin
        total = dist.new_zeros(())
        count = torch.zeros((), dtype=torch.int64, device=dist.device)
        grad = dist.new_zeros(dist.shape) if needs_grad else None
        pair_weight = dist.new_empty(a.shape) if needs_grad else None
        for sl in pair_chunks(a.numel(), dist.shape[0]):
            rows = a[sl]
            v = threshold[sl, None] - d_an[rows]
            if soft:
                total += F.softplus(v).sum()
                count += torch.isfinite(v).sum()
                weight = torch.sigmoid(v)
            else:
                hinge = v.clamp_min_(0.0)
                total += hinge.sum()
                weight = hinge.sign_()  # 1 where the triplet is active, else 0
                count += weight.sum().to(count.dtype)
            if needs_grad:
                pair_weight[sl] = weight.sum(1)
                grad.index_add_(0, rows, weight, alpha=-1.0)
        scale = count.clamp_min(1).to(dist.dtype) if mean else dist.new_ones(())
        if needs_grad:
            grad.index_put_((a, pos), pair_weight, accumulate=True)
            ctx.save_for_backward(grad / scale)
        return total / scale

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        if ctx.soft and torch.is_grad_enabled():
            # The hinge's weights are piecewise constant, so treating them as constants gives the
            # exact second derivative; the soft margin's are not, and we do not track them.
            raise RuntimeError(
                "double backward (create_graph=True) is not supported by the batch-all triplet "
                "loss with soft_margin=True and reduction 'mean'/'sum'"
            )
        return grad * grad_output, None, None, None, None
