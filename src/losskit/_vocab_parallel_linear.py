"""Linear cross entropy with the vocabulary projection sharded across tensor-parallel ranks.

:func:`vocab_parallel_linear_cross_entropy` fuses :func:`losskit.linear.linear_cross_entropy`
(chunked, no ``N × V`` logits) with :func:`losskit.distributed.vocab_parallel_cross_entropy`
(logits sharded along the vocabulary): each rank holds a slice of the LM head's rows, and neither
the full logits nor this rank's ``N × V_r`` share of them ever exists whole.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ._autograd import detach_unless_grad, first_order_only
from ._checks import (
    check_class_indices,
    check_floating,
    check_int,
    check_integer,
    check_optional_floating,
    check_range,
    check_same_device,
)
from ._precision import upcast
from ._reduction import check_reduction
from .distributed import _gather_sizes, is_distributed
from .linear import check_chunk_size, linear_cross_entropy

__all__ = ["vocab_parallel_linear_cross_entropy"]

# Logit elements per chunk (16 MB of float32): the chunk's logits and a few same-sized temporaries
# are the only vocabulary-sized memory besides the weight and its gradient.
_CHUNK_ELEMENTS = 1 << 22


class _VocabParallelLinearCrossEntropy(torch.autograd.Function):
    """Chunked ``cross_entropy(x W^T + b, t)`` with ``W``, ``b`` sharded by rows over ``group``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        target: torch.Tensor,
        group,
        start: int,
        vocab: int,
        ignore_index: int,
        eps: float,
        reduction: str,
        chunk: int,
    ) -> torch.Tensor:
        n, local_v = x.shape[0], w.shape[0]
        acc = upcast(x.new_empty(())).dtype  # float32 for fp16/bf16, else the input's dtype
        keep = target != ignore_index
        local_t = target.long() - start
        mine = keep & (local_t >= 0) & (local_t < local_v)  # this shard holds the target's row
        safe_t = torch.where(mine, local_t, 0).unsqueeze(1)

        # Per-row statistics of this shard only: O(N) memory, whatever the chunk count.
        row_max = x.new_full((n,), -torch.inf, dtype=acc)
        sum_exp = x.new_zeros((n,), dtype=acc)
        stats = x.new_zeros((3 if eps > 0.0 else 2, n), dtype=acc)  # [sum_exp, z_t, sum_v z_v]
        for r0 in range(0, n, chunk):
            r1 = min(r0 + chunk, n)
            z = upcast(F.linear(x[r0:r1], w, b))  # GEMM in the input dtype, statistics in `acc`
            if local_v:
                m = z.max(dim=1).values
                row_max[r0:r1] = m
                sum_exp[r0:r1] = torch.exp(z - m[:, None]).sum(dim=1)
                stats[1, r0:r1] = z.gather(1, safe_t[r0:r1]).squeeze(1)
                if eps > 0.0:
                    stats[2, r0:r1] = z.sum(dim=1)
            del z  # free this chunk before the next one is made

        # Two all-reduces for the whole batch, not per chunk: the global max, then the
        # rescaled sums of exponentials, the target logit (held by one rank) and the row sums.
        global_max = row_max.clone()
        dist.all_reduce(global_max, op=dist.ReduceOp.MAX, group=group)
        # exp(-inf - M) = 0 for an empty shard; the guard avoids exp(nan) if every shard is empty.
        rescale = torch.exp(torch.where(row_max == -torch.inf, -torch.inf, row_max - global_max))
        stats[0] = sum_exp * rescale
        stats[1] = torch.where(mine, stats[1], 0.0)
        dist.all_reduce(stats, op=dist.ReduceOp.SUM, group=group)

        lse = global_max + torch.log(stats[0])
        loss = lse - (1.0 - eps) * stats[1]
        if eps > 0.0:
            loss = loss - eps / vocab * stats[2]
        loss = torch.where(keep, loss, 0.0)

        ctx.save_for_backward(x, w, b, lse, local_t, mine, keep)
        ctx.opts = (group, vocab, eps, reduction, chunk)
        # float32 for half inputs, like linear_cross_entropy (what users log stays exact).
        out_dtype = torch.promote_types(x.dtype, torch.float32)
        if reduction == "none":
            return loss.to(out_dtype)
        total = loss.sum()
        # mean over kept rows: 0 / 0 = NaN when all are ignored, as torch.
        return (total / keep.sum() if reduction == "mean" else total).to(out_dtype)

    @staticmethod
    @first_order_only(
        "vocab_parallel_linear_cross_entropy",
        "compute the local logits with F.linear and use vocab_parallel_cross_entropy instead",
    )
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        x, w, b, lse, local_t, mine, keep = ctx.saved_tensors
        group, vocab, eps, reduction, chunk = ctx.opts
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        n, local_v = x.shape[0], w.shape[0]
        acc = lse.dtype

        # Per-row factor g_i: the upstream gradient, 1 / n_kept for mean, 0 for ignored rows.
        go = grad_out.to(acc)
        if reduction == "none":
            row_scale = go.reshape(-1)
        elif reduction == "sum":
            row_scale = go.expand(n)
        else:
            n_kept = keep.sum()
            # Where nothing is kept every row is masked below; avoid 0 * inf = NaN there.
            row_scale = torch.where(n_kept > 0, go / n_kept.clamp(min=1), 0.0).expand(n)
        row_scale = torch.where(keep, row_scale, 0.0)

        gx = torch.empty_like(x, memory_format=torch.contiguous_format) if need_x else None
        gw = torch.zeros_like(w) if need_w else None
        gb = x.new_zeros((local_v,), dtype=acc) if need_b else None
        for r0 in range(0, n, chunk):
            r1 = min(r0 + chunk, n)
            xc = x[r0:r1]
            z = upcast(F.linear(xc, w, b))  # recomputed: nothing vocabulary-sized was saved
            # dz_iv = g_i (softmax_iv - (1 - eps) [v == t_i] - eps / V) on this shard's columns.
            dz = torch.exp(z - lse[r0:r1, None])
            del z
            if eps > 0.0:
                dz -= eps / vocab
            rows = torch.nonzero(mine[r0:r1]).squeeze(1)
            dz[rows, local_t[r0:r1][rows]] -= 1.0 - eps
            dz *= row_scale[r0:r1, None]
            if gb is not None:
                gb += dz.sum(dim=0)
            dz = dz.to(x.dtype)
            if gx is not None:
                torch.mm(dz, w, out=gx[r0:r1])
            if gw is not None:
                gw.addmm_(dz.t(), xc)
            del dz

        if gx is not None:
            # The input is replicated and every shard's columns contribute to its gradient:
            # sum the partial gradients over the group (Megatron's "copy to tensor-parallel
            # region" backward), so every rank holds the full input gradient.
            dist.all_reduce(gx, op=dist.ReduceOp.SUM, group=group)
        if gb is not None:
            gb = gb.to(b.dtype)
        return gx, gw, gb, *(None,) * 8


def vocab_parallel_linear_cross_entropy(
    input: torch.Tensor,
    local_weight: torch.Tensor,
    target: torch.Tensor,
    group: dist.ProcessGroup | None = None,
    *,
    local_bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""Cross entropy of an LM head whose rows are sharded across tensor-parallel ranks.

    With the full head :math:`W \in \mathbb{R}^{V \times H}` (bias :math:`b`) split by rows,
    rank ``r`` holding rows ``[start_r, start_r + V_r)``, and :math:`z_i = W x_i + b`:

    .. math::
        \ell_i = \log \sum_{v<V} e^{z_{iv}} - (1-\varepsilon)\, z_{i,t_i}
                 - \frac{\varepsilon}{V} \sum_{v<V} z_{iv}

    (0 for ignored rows): exactly ``torch.nn.functional.cross_entropy(input @ W.T + b, target)``
    in value and gradient, without gathering ``W`` or the logits. Each rank runs over its rows
    ``chunk_size`` at a time, making only that chunk's ``(chunk, V_r)`` logits and keeping
    per-row statistics (local max, sum of exponentials, target logit, row sum of logits); the
    backward recomputes each chunk's logits. Logits come from a GEMM in the input dtype and all
    statistics and gradients of the logits are computed in float32 for float16/bfloat16 inputs
    (in the input dtype for float32/float64); the loss is float32 for half inputs, as
    :func:`losskit.linear_cross_entropy`.

    Collectives per call, on every rank alike: forward one ``all_gather`` of the shard sizes and
    two ``all_reduce`` (MAX of the row maxima; one SUM of the stacked rescaled sums of
    exponentials, target logits and row sums), whatever the number of chunks; backward one
    ``all_reduce`` SUM of ``input``'s gradient (none when ``input`` does not require grad, which
    must then hold on every rank).

    Gradient convention: ``local_weight`` and ``local_bias`` receive their rows of the full
    gradient. ``input`` is replicated over the group and every shard contributes to its gradient,
    so the backward sums the partial gradients over the group (Megatron's "copy to
    tensor-parallel region"): every rank gets the full gradient of the single-process loss. Do
    not all-reduce it again, and do not average the head's gradients over this group.

    Args:
        input: ``(..., H)``, identical on every rank of ``group``.
        local_weight: ``(V_r, H)``, this rank's rows of the ``(V, H)`` head; shards may be
            uneven (sizes are gathered), ranks own consecutive slices in rank order.
        target: ``(...)`` (``input.shape[:-1]``) global class indices in ``[0, V)`` or
            ``ignore_index``, identical on every rank. An out-of-range index raises
            ``IndexError`` on every rank alike.
        group: the tensor-parallel process group (default: the world).
        local_bias: optional ``(V_r,)``, this rank's slice of the bias.
        ignore_index: target value whose row contributes nothing.
        label_smoothing: :math:`\varepsilon \in [0, 1]`, uniform over the full vocabulary ``V``.
        reduction: ``"none" | "mean" | "sum"``; ``mean`` over non-ignored rows (NaN if none).
        chunk_size: rows per chunk; ``None`` keeps a chunk's logits near 4M elements.

    Returns:
        Scalar, or ``target``'s shape for ``reduction="none"``; dtype of ``input``; the same on
        every rank.

    Without an initialised process group (or with a world of one) this is
    :func:`losskit.linear_cross_entropy` on ``local_weight``, taken as the whole head. The
    gradient is not differentiable again (no double backward).
    """
    input = check_floating("input", input)
    local_weight = check_floating("local_weight", local_weight)
    target = check_integer("target", target)
    local_bias = check_optional_floating("local_bias", local_bias)
    reduction = check_reduction(reduction)
    ignore_index = check_int("ignore_index", ignore_index)
    label_smoothing = check_range("label_smoothing", label_smoothing, 0.0, 1.0)
    chunk_size = check_chunk_size(chunk_size)
    if input.dim() < 1:
        raise ValueError("input must be (..., H) with H the hidden size, got a 0-D tensor")
    hidden = input.shape[-1]
    if local_weight.dim() != 2 or local_weight.shape[1] != hidden:
        raise ValueError(
            f"local_weight must be (V_r, {hidden}) for input of shape {tuple(input.shape)}, "
            f"got shape {tuple(local_weight.shape)}"
        )
    if local_weight.dtype != input.dtype:
        raise TypeError(
            f"local_weight has dtype {local_weight.dtype} but input has {input.dtype}; "
            "they must match"
        )
    local_v = local_weight.shape[0]
    if local_bias is not None:
        if tuple(local_bias.shape) != (local_v,):
            raise ValueError(
                f"local_bias must have shape ({local_v},) to match local_weight of shape "
                f"{tuple(local_weight.shape)}, got {tuple(local_bias.shape)}"
            )
        if local_bias.dtype != input.dtype:
            raise TypeError(
                f"local_bias has dtype {local_bias.dtype} but input has {input.dtype}; "
                "they must match"
            )
    if tuple(target.shape) != tuple(input.shape[:-1]):
        raise ValueError(
            f"target must have shape {tuple(input.shape[:-1])} (input's shape without its last "
            f"dimension), got {tuple(target.shape)}"
        )
    for name, t in (("local_weight", local_weight), ("local_bias", local_bias), ("target", target)):
        if t is not None:
            check_same_device(name, t, input)

    # Flatten here, not in the Function: autograd restores input's shape for its gradient.
    x = input.reshape(-1, hidden)
    t = target.reshape(-1)
    if not is_distributed(group):
        out = linear_cross_entropy(
            x, local_weight, t, linear_bias=local_bias, reduction=reduction,
            ignore_index=ignore_index, label_smoothing=label_smoothing, chunk_size=chunk_size,
        )  # fmt: skip
        return out.reshape(target.shape) if reduction == "none" else out

    sizes = _gather_sizes(local_v, input.device, group)
    start = sum(sizes[: dist.get_rank(group)])
    vocab = sum(sizes)
    # The target is replicated, so every rank raises (or none does): no rank is left waiting.
    check_class_indices(t, vocab, ignore_index)
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // max(local_v, 1))
    x, local_weight = detach_unless_grad(x), detach_unless_grad(local_weight)
    if local_bias is not None:
        local_bias = detach_unless_grad(local_bias)
    out = _VocabParallelLinearCrossEntropy.apply(
        x, local_weight, local_bias, t, group, start, vocab, ignore_index, label_smoothing,
        reduction, chunk_size,
    )  # fmt: skip
    return out.reshape(target.shape) if reduction == "none" else out
