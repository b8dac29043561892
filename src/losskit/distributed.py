"""losskit on ``torch.distributed``: a differentiable all-gather, cross-rank metric learning and
vocab-parallel cross entropy.

Scaling convention (SPMD): every rank computes the *same global loss* from gathered data. The
backward of :func:`all_gather_with_grad` therefore sums, over ranks, the gradients that land on each
rank's slice; after DDP averages parameter gradients over the ``W`` ranks, every rank holds exactly the
gradient of the single-process loss on the concatenated batch.

Without an initialised process group (or with a world of one) every function here falls back to
its single-process behaviour: :func:`all_gather_with_grad` returns its input and
:func:`vocab_parallel_cross_entropy` is plain cross entropy on the local logits.

Errors: checks of replicated arguments (the targets' class range) raise on every rank alike.
A check of a rank's own tensors (a wrong shard shape, say) raises on that rank only; the other
ranks then wait in their next collective until the process group's timeout.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ._checks import (
    check_class_indices,
    check_floating,
    check_int,
    check_integer,
    check_range,
    check_tensor,
)
from ._reduction import check_reduction

__all__ = [
    "CrossRankLoss",
    "all_gather_no_grad",
    "all_gather_with_grad",
    "gather_embeddings",
    "is_distributed",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_linear_cross_entropy",
]


def is_distributed(group: dist.ProcessGroup | None = None) -> bool:
    """True when a process group is initialised and has more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def _gather_sizes(n: int, device: torch.device, group) -> list[int]:
    size = torch.tensor([n], device=device, dtype=torch.int64)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, size, group=group)
    return [int(s) for s in sizes]


def _gather_padded(tensor: torch.Tensor, sizes: list[int], group) -> torch.Tensor:
    # all_gather needs equal shapes: pad every rank's block to the largest, then cut the padding.
    largest = max(sizes)
    padded = tensor.new_zeros((largest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    blocks = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(blocks, padded.contiguous(), group=group)
    return torch.cat([b[:n] for b, n in zip(blocks, sizes, strict=True)])


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        sizes = _gather_sizes(tensor.shape[0], tensor.device, group)
        rank = dist.get_rank(group)
        ctx.group = group
        ctx.bounds = (sum(sizes[:rank]), sum(sizes[: rank + 1]))
        return _gather_padded(tensor, sizes, group)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # Every rank's loss may touch every slice: sum the gradients, keep our own slice.
        # A copy: all_reduce works in place, and ``grad`` may be the caller's upstream tensor.
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start, end = ctx.bounds
        return grad[start:end], None


def all_gather_with_grad(
    tensor: torch.Tensor, group: dist.ProcessGroup | None = None
) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, keeping the gradient of every slice.

    Unlike a plain ``all_gather`` (and pytorch-metric-learning's wrapper), the samples of other ranks
    are not constants: the backward returns to each rank the gradient of its own slice, summed over
    the ranks' losses. Ranks may hold different batch sizes (other dims must agree).

    Args:
        tensor: ``(B_r, *)`` on this rank.
        group: the process group (default: the world).

    Returns:
        ``(sum_r B_r, *)``, rank 0's rows first. Without an initialised group: ``tensor`` itself.
    """
    check_tensor("tensor", tensor)
    if tensor.dim() == 0:
        raise ValueError("tensor must have a batch dimension, got a 0-D tensor")
    if not is_distributed(group):
        return tensor
    return _AllGatherWithGrad.apply(tensor, group)


def all_gather_no_grad(
    tensor: torch.Tensor, group: dist.ProcessGroup | None = None
) -> torch.Tensor:
    """Concatenate ``tensor`` (e.g. integer labels) from every rank along dim 0; no gradient."""
    check_tensor("tensor", tensor)
    if not is_distributed(group):
        return tensor
    sizes = _gather_sizes(tensor.shape[0], tensor.device, group)
    return _gather_padded(tensor.detach(), sizes, group)


def gather_embeddings(
    embeddings: torch.Tensor, labels: torch.Tensor, group: dist.ProcessGroup | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of metric learning: every rank's embeddings (with gradient) and labels.

    Pass the result to any :mod:`losskit.metric` loss to mine across all ranks, so that an anchor
    on one rank finds its hardest positive or negative on another::

        loss = losskit.metric.triplet_loss(*gather_embeddings(model(x), y), mining="batch_hard")

    Every rank then computes the same global loss; with DDP's gradient averaging each rank ends
    up with the gradient of the single-process loss on the concatenated batch (the convention of
    :func:`all_gather_with_grad`). Ranks may hold different batch sizes.

    Args:
        embeddings: ``(B_r, D)`` on this rank.
        labels: ``(B_r,)`` on this rank.
        group: the process group (default: the world).

    Returns:
        ``(sum_r B_r, D)`` embeddings and ``(sum_r B_r,)`` labels, rank 0's rows first; the inputs
        themselves without an initialised group.
    """
    check_tensor("embeddings", embeddings)
    check_integer("labels", labels)
    if embeddings.dim() < 1 or labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must be (B,) with B = embeddings.shape[0]; got embeddings "
            f"{tuple(embeddings.shape)} and labels {tuple(labels.shape)}"
        )
    return all_gather_with_grad(embeddings, group), all_gather_no_grad(labels, group)


class CrossRankLoss(torch.nn.Module):
    """Wrap a metric-learning loss ``loss(embeddings, labels)`` so it mines over the global batch.

    ``CrossRankLoss(losskit.nn.TripletLoss(margin=0.2))(embeddings, labels)`` gathers every rank's
    embeddings and labels (:func:`gather_embeddings`) and applies the wrapped loss to them. Outside
    a process group it is the wrapped loss unchanged.
    """

    def __init__(self, loss: torch.nn.Module, group: dist.ProcessGroup | None = None) -> None:
        super().__init__()
        if not callable(loss):
            raise TypeError(f"loss must be a callable loss(embeddings, labels), got {loss!r}")
        self.loss = loss
        self.group = group

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(*gather_embeddings(embeddings, labels, self.group))


class _VocabParallelCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, group, ignore_index, label_smoothing, reduction):
        x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        x = x.reshape(target.numel(), x.shape[-1])  # not -1: a rank may hold no column
        t = target.reshape(-1)
        local_v = x.shape[1]
        vocab_sizes = _gather_sizes(local_v, x.device, group)
        start = sum(vocab_sizes[: dist.get_rank(group)])
        vocab = sum(vocab_sizes)
        # The target is replicated, so every rank raises (or none does): no rank is left waiting.
        check_class_indices(t, vocab, ignore_index)

        row_max = x.max(dim=1).values if local_v else x.new_full((x.shape[0],), -torch.inf)
        dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=group)

        keep = t != ignore_index
        local_t = t - start
        mine = keep & (local_t >= 0) & (local_t < local_v)  # this shard holds the target's column
        if local_v:
            picked = x.gather(1, torch.where(mine, local_t, 0).unsqueeze(1)).squeeze(1)
        else:  # a rank without a column of the vocabulary holds no target logit
            picked = x.new_zeros(x.shape[0])
        # One all-reduce for every per-row sum: the exponentials, the target logit (non-zero on
        # one rank only) and, for label smoothing, the row sum of logits.
        sums = [torch.exp(x - row_max[:, None]).sum(dim=1), torch.where(mine, picked, 0.0)]
        if label_smoothing > 0.0:
            sums.append(x.sum(dim=1))
        sums = torch.stack(sums)
        dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)
        lse = row_max + torch.log(sums[0])
        loss = lse - sums[1]
        if label_smoothing > 0.0:
            smooth = vocab * lse - sums[2]  # -sum_v log p_v
            loss = (1.0 - label_smoothing) * loss + label_smoothing / vocab * smooth
        loss = torch.where(keep, loss, torch.zeros_like(loss))

        ctx.save_for_backward(x, lse, local_t, mine, keep)
        ctx.meta = (logits.shape, logits.dtype, target.shape, vocab, label_smoothing, reduction)
        if reduction == "none":
            return loss.reshape(target.shape).to(logits.dtype)
        if reduction == "sum":
            return loss.sum().to(logits.dtype)
        return (loss.sum() / keep.sum()).to(logits.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        x, lse, local_t, mine, keep = ctx.saved_tensors
        shape, dtype, _, vocab, eps, reduction = ctx.meta
        # d loss_i / d x_iv = p_iv - (1 - eps) [v == t_i] - eps / V, on this rank's vocabulary slice.
        grad = torch.exp(x - lse[:, None])
        if eps > 0.0:
            grad = grad - eps / vocab
        rows = torch.arange(x.shape[0], device=x.device)[mine]
        grad[rows, local_t[mine]] -= 1.0 - eps
        if reduction == "none":
            scale = grad_out.reshape(-1).to(grad.dtype)
        elif reduction == "sum":
            scale = grad_out.to(grad.dtype).expand(x.shape[0])
        else:
            scale = (grad_out.to(grad.dtype) / keep.sum()).expand(x.shape[0])
        # where(), not a product with keep: with every target ignored, mean's scale is inf.
        grad = torch.where(keep[:, None], grad * scale[:, None], torch.zeros_like(grad))
        return grad.reshape(shape).to(dtype), None, None, None, None, None


def vocab_parallel_cross_entropy(
    local_logits: torch.Tensor,
    target: torch.Tensor,
    group: dist.ProcessGroup | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Cross entropy over logits sharded along the vocabulary across tensor-parallel ranks.

    Rank ``r`` holds columns ``[start_r, start_r + V_r)`` of the full ``(..., V)`` logits (shards
    may be uneven; ranks are ordered by rank). Two all-reduces per call (the row max, then the
    stacked sums of exponentials, target logits and, with label smoothing, logits) give

    .. math:: \ell_i = \log\sum_v e^{x_{iv}} - (1-\varepsilon)\, x_{i,t_i}
              - \frac{\varepsilon}{V}\sum_v x_{iv}

    i.e. exactly :func:`losskit.cross_entropy` on the full logits (value and gradient), without ever
    gathering them. The gradient w.r.t. the local logits is the local slice of the full gradient.

    Args:
        local_logits: ``(..., V_r)``, this rank's vocabulary shard.
        target: ``(...)`` global class indices in ``[0, V)``, identical on every rank, or ``ignore_index``.
        group: the tensor-parallel process group (default: the world).
        ignore_index: target value that contributes nothing.
        label_smoothing: :math:`\varepsilon \in [0, 1]`, uniform over the full vocabulary.
        reduction: ``"none" | "mean" | "sum"``; ``mean`` over non-ignored targets (NaN if none).

    Without an initialised process group this is :func:`losskit.cross_entropy` on ``local_logits``.
    """
    check_floating("local_logits", local_logits)
    check_tensor("target", target)
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"target must hold class indices (int64), got {target.dtype}")
    reduction = check_reduction(reduction)
    ignore_index = check_int("ignore_index", ignore_index)
    label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0)
    if local_logits.dim() < 1 or tuple(target.shape) != tuple(local_logits.shape[:-1]):
        raise ValueError(
            f"target shape {tuple(target.shape)} must equal local_logits shape without its last "
            f"(vocabulary) dimension, {tuple(local_logits.shape[:-1])}"
        )
    if not is_distributed(group):
        from .classification import cross_entropy

        flat = local_logits.reshape(target.numel(), local_logits.shape[-1])
        out = cross_entropy(
            flat, target.reshape(-1), None, ignore_index, reduction, label_smoothing
        )
        return out.reshape(target.shape) if reduction == "none" else out
    return _VocabParallelCrossEntropy.apply(
        local_logits, target, group, ignore_index, label_smoothing, reduction
    )


# At the end: the sharded-projection variant builds on the helpers above.
from ._vocab_parallel_linear import vocab_parallel_linear_cross_entropy  # noqa: E402
