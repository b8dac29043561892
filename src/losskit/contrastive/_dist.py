"""The cross-rank pieces of the contrastive losses (losskit.distributed's SPMD convention).

Every rank computes its own rows of the global similarity matrix (``B_local × B_global``) and
the losses come back as the *global* loss on every rank: ``sum``/``mean`` through one all-reduce
of a scalar whose backward scales the gradient by the world size ``W``, ``none`` through a
gather of the per-row losses. As with :func:`losskit.distributed.all_gather_with_grad` (whose
backward sums the gradients of the ``W`` identical losses), each rank then holds ``W`` times the
gradient of its own samples, and DDP's average gives every rank the gradient of the
single-process loss on the concatenated batch. Ranks may hold different batch sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from .._reduction import reduce
from ..distributed import _gather_padded, _gather_sizes, is_distributed

__all__ = ["Ranks", "finish", "gather", "ranks_of", "shift_right"]


@dataclass(frozen=True)
class Ranks:
    """Where this rank's rows sit in the global batch."""

    group: dist.ProcessGroup | None
    rank: int
    world: int
    sizes: tuple[int, ...]

    @property
    def offset(self) -> int:
        return sum(self.sizes[: self.rank])

    @property
    def total(self) -> int:
        return sum(self.sizes)


def ranks_of(n: int, device: torch.device, group) -> Ranks | None:
    """The batch sizes of every rank (one all-gather), or None outside a process group."""
    if not is_distributed(group):
        return None
    sizes = _gather_sizes(n, device, group)
    return Ranks(group, dist.get_rank(group), dist.get_world_size(group), tuple(sizes))


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, ranks: Ranks):
        ctx.ranks = ranks
        return _gather_padded(tensor, list(ranks.sizes), ranks.group)

    @staticmethod
    def backward(ctx, grad):
        # Every rank's loss may touch every slice: sum the gradients, keep our own slice.
        r = ctx.ranks
        # A copy: the incoming gradient may be the caller's own tensor (loss.backward(up)).
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=r.group)
        return grad[r.offset : r.offset + r.sizes[r.rank]], None


def gather(tensor: torch.Tensor, ranks: Ranks, with_grad: bool = True) -> torch.Tensor:
    """Every rank's rows, rank 0's first; the backward returns each rank its slice's gradient."""
    if with_grad:
        return _Gather.apply(tensor, ranks)
    return _gather_padded(tensor.detach(), list(ranks.sizes), ranks.group)


class _GlobalSum(torch.autograd.Function):
    """All-reduce (sum) of a scalar; the backward is the SPMD one: W identical losses."""

    @staticmethod
    def forward(ctx, value, ranks: Ranks):
        ctx.world = ranks.world
        out = value.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=ranks.group)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.world, None


def finish(rows: torch.Tensor, reduction: str, ranks: Ranks | None, count: int) -> torch.Tensor:
    """Reduce this rank's per-row losses to the global loss (``count``: the global number of
    rows that ``mean`` divides by; ``none`` returns every rank's rows)."""
    if ranks is None:
        return reduce(rows, reduction)
    if reduction == "none":
        return gather(rows, ranks)
    total = _GlobalSum.apply(rows.sum(), ranks)
    return total if reduction == "sum" else total / count


def _peer(ranks: Ranks, r: int) -> int:
    r %= ranks.world
    return r if ranks.group is None else dist.get_global_rank(ranks.group, r)


def _exchange(send: torch.Tensor, to: int, frm: int, recv_shape, group) -> torch.Tensor:
    recv = send.new_empty(recv_shape)
    ops = [dist.isend(send.contiguous(), to, group=group), dist.irecv(recv, frm, group=group)]
    for op in ops:
        op.wait()
    return recv


class _ShiftRight(torch.autograd.Function):
    """Send to the right neighbour, receive from the left; the gradient goes the other way."""

    @staticmethod
    def forward(ctx, tensor, ranks: Ranks, recv_rows: int):
        ctx.ranks = ranks
        ctx.rows = tensor.shape[0]
        right, left = _peer(ranks, ranks.rank + 1), _peer(ranks, ranks.rank - 1)
        return _exchange(tensor, right, left, (recv_rows, *tensor.shape[1:]), ranks.group)

    @staticmethod
    def backward(ctx, grad):
        r = ctx.ranks
        right, left = _peer(r, r.rank + 1), _peer(r, r.rank - 1)
        back = _exchange(grad, left, right, (ctx.rows, *grad.shape[1:]), r.group)
        return back, None, None


def shift_right(tensor: torch.Tensor, ranks: Ranks, source: int) -> torch.Tensor:
    """The block the left neighbour holds (rank ``source``'s rows), with gradient."""
    return _ShiftRight.apply(tensor, ranks, ranks.sizes[source % ranks.world])
