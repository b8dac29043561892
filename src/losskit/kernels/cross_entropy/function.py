"""Autograd Function and launcher of the fused cross-entropy kernel.

For ``reduction="mean"``/``"sum"`` the forward writes the gradient (scaled by the mean's
denominator, which is computed on the device) while it has the row in cache; the backward only
multiplies it by the upstream scalar, and skips even that when it is 1. For ``reduction="none"``
the forward saves the per-row log-sum-exp and the backward reads the logits once more.
"""

from __future__ import annotations

import torch
import triton

from ..._autograd import detach_unless_grad, first_order_only
from ..common.function import once_only, scale_by_upstream_
from .kernel import ce_kernel

# Tests set this to exercise the multi-block path with small class counts.
FORCE_BLOCK: int | None = None
# Rows of at most this many classes are held in registers and read once.
MAX_SINGLE_BLOCK = 16384
# Measured on an H100 (benchmarks/RESULTS.md): 32768-wide blocks with 32 warps and one program per
# row beat 8192/16 (2.12 vs 2.28 ms on bf16 8192 x 128256) and a persistent grid of 1-2
# programs per SM (2.25-3.2 ms).
MULTI_BLOCK = 32768
MULTI_WARPS = 32
# A persistent grid (``PROGRAMS_PER_SM`` programs per SM, each looping over rows) is available;
# ``None`` launches one program per row. Tests set FORCE_PROGRAMS to loop under the interpreter.
PROGRAMS_PER_SM: int | None = None
FORCE_PROGRAMS: int | None = None


def launch_config(n_cols: int) -> tuple[int, bool, int]:
    """``(BLOCK, SINGLE, num_warps)`` for rows of ``n_cols`` classes."""
    if FORCE_BLOCK is not None:
        return FORCE_BLOCK, n_cols <= FORCE_BLOCK, 4
    if n_cols <= MAX_SINGLE_BLOCK:
        block = max(triton.next_power_of_2(n_cols), 32)
        warps = 4 if block <= 2048 else 8 if block <= 8192 else 16
        return block, True, warps
    return MULTI_BLOCK, False, MULTI_WARPS


def _rows_view(input: torch.Tensor) -> torch.Tensor:
    """``(B, C, S)`` view of ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)`` logits."""
    if input.dim() == 1:
        return input.view(1, -1, 1) if input.is_contiguous() else input.unsqueeze(0).unsqueeze(-1)
    if input.dim() == 2:
        return input.unsqueeze(-1)
    return input.reshape(input.shape[0], input.shape[1], -1)


def _grid(rows: int, single: bool, device: torch.device) -> int:
    """One program per row for rows held in registers; a persistent grid for long rows."""
    if FORCE_PROGRAMS is not None:
        return max(1, min(rows, FORCE_PROGRAMS))
    if single or device.type != "cuda" or PROGRAMS_PER_SM is None:
        return rows
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(rows, sms * PROGRAMS_PER_SM))


def _launch(
    x3: torch.Tensor,
    grad: torch.Tensor | None,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    consts: torch.Tensor,
    go: torch.Tensor | None,
    loss: torch.Tensor,
    z: torch.Tensor,
    lse: torch.Tensor,
    *,
    ignore_index: int,
    eps: float,
    z_scale: float,
    cap: float | None,
    stats: bool,
    row_scale: bool,
) -> None:
    n_b, n_cols, n_inner = x3.shape
    rows = n_b * n_inner
    if rows == 0:
        return
    block, single, warps = launch_config(n_cols)
    g = grad if grad is not None else x3  # a valid pointer; never written without GRAD
    ce_kernel[(_grid(rows, single, x3.device),)](
        x3, *x3.stride(),
        g, *g.stride(),
        target,
        weight if weight is not None else consts,
        consts,
        go if go is not None else consts,
        loss, z, lse,
        rows, n_cols, n_inner, ignore_index,
        eps, z_scale, 1.0 if cap is None else cap,
        BLOCK=block,
        SINGLE=single,
        HAS_WEIGHT=weight is not None,
        SMOOTH=eps > 0.0,
        ZLOSS=z_scale != 0.0,
        SOFTCAP=cap is not None,
        STATS=stats,
        GRAD=grad is not None,
        ROW_SCALE=row_scale,
        num_warps=warps,
    )  # fmt: skip


class CrossEntropyFunction(torch.autograd.Function):
    """``(loss, z_loss)`` of class-index cross entropy; ``z_loss`` is not differentiable."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        input: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        ignore_index: int,
        reduction: str,
        eps: float,
        z_scale: float,
        cap: float | None,
        inplace_backward: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x3 = _rows_view(input)
        n_b, n_cols, n_inner = x3.shape
        rows = n_b * n_inner
        device = input.device
        t = target.reshape(rows).contiguous()
        w = None if weight is None else weight.to(device=device, dtype=torch.float32).contiguous()
        f32 = {"device": device, "dtype": torch.float32}
        loss_rows = torch.empty(rows, **f32)
        lse = torch.empty(rows, 2, **f32)  # (max, log-sum-exp - max) per row
        z_rows = torch.empty(rows if z_scale != 0.0 else 1, **f32)

        # Denominators of the mean, computed on the device (no host synchronisation).
        keep = t != ignore_index
        if w is None:
            target_weight = keep.to(torch.float32)
            w_sum = torch.tensor(float(n_cols), **f32)
        else:
            # clamp: an out-of-range index (value checks off) must not fault the gather.
            # long(): a uint8 index tensor would be read as a boolean mask.
            target_weight = w[t.long().clamp(0, max(n_cols - 1, 0))] * keep
            w_sum = w.sum()
        denom = target_weight.sum()
        n_kept = keep.sum().to(torch.float32)
        one = torch.ones((), **f32)
        if reduction == "mean":
            consts = torch.stack([1.0 / denom, 1.0 / n_kept, w_sum])
        else:
            consts = torch.stack([one, one, w_sum])

        grad = None
        fused_grad = ctx.needs_input_grad[0] and reduction != "none"
        if fused_grad:
            if inplace_backward and input.is_contiguous():
                grad = x3
                # The logits now hold the gradient: autograd must know, so that an op that saved
                # them raises its in-place error instead of using the gradient as logits.
                torch.autograd.graph.increment_version(input)
            else:
                grad = torch.empty((n_b, n_cols, n_inner), device=device, dtype=input.dtype)
        _launch(
            x3, grad, t, w, consts, None, loss_rows, z_rows, lse,
            ignore_index=ignore_index, eps=eps, z_scale=z_scale, cap=cap,
            stats=True, row_scale=False,
        )  # fmt: skip

        zs = z_rows if z_scale != 0.0 else torch.zeros(rows, **f32)
        if reduction == "none":
            out = (loss_rows + zs).reshape(target.shape)
            z_out = zs.reshape(target.shape)
        elif reduction == "sum":
            z_out = zs.sum()
            out = loss_rows.sum() + z_out
        else:
            z_out = zs.sum() / n_kept
            out = loss_rows.sum() / denom + z_out
        out = out.to(input.dtype)
        z_out = z_out.to(input.dtype)
        ctx.mark_non_differentiable(z_out)

        ctx.reduction = reduction
        ctx.input_shape = input.shape
        if fused_grad:
            ctx.grad = grad
        elif ctx.needs_input_grad[0]:
            ctx.save_for_backward(input, t, w, lse)
            ctx.opts = (ignore_index, eps, z_scale, cap, inplace_backward)
        return out, z_out

    @staticmethod
    @first_order_only("cross_entropy")
    def backward(ctx, grad_out: torch.Tensor, _grad_z: torch.Tensor):  # type: ignore[override]
        if ctx.reduction != "none":
            once_only(ctx, "cross_entropy")
            grad = ctx.grad
            ctx.grad = None
            if grad.is_contiguous():
                scale_by_upstream_(grad.view(-1), grad_out)
            else:  # the caller's non-contiguous logits are never written in place
                grad.mul_(grad_out.to(grad.dtype))
            return grad.view(ctx.input_shape), *([None] * 8)
        input, t, w, lse = ctx.saved_tensors
        ignore_index, eps, z_scale, cap, inplace_backward = ctx.opts
        x3 = _rows_view(input)
        n_b, n_cols, n_inner = x3.shape
        if inplace_backward and input.is_contiguous():
            grad = x3
            torch.autograd.graph.increment_version(input)  # as in the forward above
        else:
            grad = torch.empty((n_b, n_cols, n_inner), device=input.device, dtype=input.dtype)
        go = grad_out.reshape(-1).to(torch.float32).contiguous()
        consts = torch.zeros(3, device=input.device, dtype=torch.float32)
        if w is not None:
            consts[2] = w.sum()
        _launch(
            x3, grad, t, w, consts, go, lse, lse, lse,
            ignore_index=ignore_index, eps=eps, z_scale=z_scale, cap=cap,
            stats=False, row_scale=True,
        )  # fmt: skip
        return grad.view(ctx.input_shape), *([None] * 8)


def triton_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    lse_square_scale: float = 0.0,
    softcap: float | None = None,
    return_z_loss: bool = False,
    inplace_backward: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Cross entropy of class-index targets by the fused kernel (arguments already validated).

    Same conventions as :func:`losskit.cross_entropy`; see
    :func:`losskit.cross_entropy_with_z_loss` for ``lse_square_scale`` and ``softcap``.
    """
    loss, z = CrossEntropyFunction.apply(
        detach_unless_grad(input),  # no gradient buffer (nor in-place write) under no_grad
        target,
        weight,
        int(ignore_index),
        reduction,
        float(label_smoothing),
        float(lse_square_scale),
        None if softcap is None else float(softcap),
        bool(inplace_backward),
    )
    return (loss, z) if return_z_loss else loss


def rows_forward(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    consts: torch.Tensor,
    grad: torch.Tensor | None,
    loss_rows: torch.Tensor,
    lse_rows: torch.Tensor,
    *,
    ignore_index: int,
    eps: float,
) -> None:
    """Kernel call on ``(rows, C)`` logits without autograd (the chunks of linear cross entropy).

    Writes per-row losses and ``(max, log sum exp(x - max))`` into ``lse_rows`` ``(rows, 2)``; with ``grad`` (may be ``logits`` itself), the
    gradient scaled by ``consts[0]`` (``consts[2]`` = sum of the float32 class ``weight``).
    """
    _launch(
        logits.unsqueeze(-1), None if grad is None else grad.unsqueeze(-1), target, weight,
        consts, None, loss_rows, loss_rows, lse_rows,
        ignore_index=ignore_index, eps=eps, z_scale=0.0, cap=None, stats=True, row_scale=False,
    )  # fmt: skip


def rows_backward(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    consts: torch.Tensor,
    grad_rows: torch.Tensor,
    lse_rows: torch.Tensor,
    grad: torch.Tensor,
    *,
    ignore_index: int,
    eps: float,
) -> None:
    """The gradient of per-row losses times ``grad_rows`` from the saved ``lse_rows``."""
    _launch(
        logits.unsqueeze(-1), grad.unsqueeze(-1), target, weight, consts, grad_rows,
        lse_rows, lse_rows, lse_rows,
        ignore_index=ignore_index, eps=eps, z_scale=0.0, cap=None, stats=False, row_scale=True,
    )  # fmt: skip
