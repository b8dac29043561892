"""Autograd Functions and launchers of the KL divergence and distillation kernels."""

from __future__ import annotations

import math

import torch
import triton

from ..._autograd import detach_unless_grad, first_order_only
from ..common.function import once_only, scale_by_upstream_
from .kernel import distill_kernel, kl_pointwise_kernel

POINTWISE_BLOCK = 2048
# Rows of at most this many classes stay in registers (one read); tests lower it.
MAX_SINGLE_BLOCK = 16384
# Measured on an H100, bf16 8192 x 32000 (benchmarks/RESULTS.md): 8192/16 warps 0.87 ms; 4096/8
# 0.93 ms; one 32768-wide block in registers 5.4-6.1 ms (spills).
MULTI_BLOCK = 8192
MULTI_WARPS = 16


def _batchmean_divisor(input: torch.Tensor) -> int:
    return input.shape[0] if input.dim() > 0 else 1


# ---------------------------------------------------------------- element-wise kl_div


def _launch_pointwise(x, t, out, grad, go, *, grad_scale, log_target, loss, reduce):
    grid = (triton.cdiv(x.numel(), POINTWISE_BLOCK),)
    kl_pointwise_kernel[grid](
        x, t,
        x if out is None else out,
        x if grad is None else grad,
        x if go is None else go,
        x.numel(), grad_scale,
        BLOCK=POINTWISE_BLOCK,
        LOG_TARGET=log_target,
        LOSS=loss,
        REDUCE=reduce,
        GRAD=grad is not None,
        ROW_SCALE=go is not None,
        num_warps=8,
    )  # fmt: skip


class KLDivFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, target, reduction, log_target):  # type: ignore[override]
        x = input.contiguous().view(-1)
        t = target.contiguous().view(-1)
        n = x.numel()
        ctx.reduction, ctx.log_target, ctx.input_shape = reduction, log_target, input.shape
        if reduction == "none":
            out = torch.empty_like(x)
            if n:
                _launch_pointwise(
                    x, t, out, None, None, grad_scale=1.0, log_target=log_target, loss=True,
                    reduce=False,
                )  # fmt: skip
            if ctx.needs_input_grad[0]:
                ctx.save_for_backward(x, t)
            return out.view(input.shape)
        divisor = {"sum": 1, "mean": n, "batchmean": _batchmean_divisor(input)}[reduction]
        grad = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        if n:
            partial = torch.empty(triton.cdiv(n, POINTWISE_BLOCK), device=x.device)
            _launch_pointwise(
                x, t, partial, grad, None, grad_scale=1.0 / max(divisor, 1),
                log_target=log_target, loss=True, reduce=True,
            )  # fmt: skip
            total = partial.sum()
        else:
            total = torch.zeros((), device=x.device)
        ctx.grad = grad
        return (total / divisor).to(input.dtype)  # 0 / 0 = NaN for an empty mean, as torch

    @staticmethod
    @first_order_only("kl_div")
    def backward(ctx, grad_out):  # type: ignore[override]
        if ctx.reduction != "none":
            once_only(ctx, "kl_div")
            grad, ctx.grad = ctx.grad, None
            return scale_by_upstream_(grad, grad_out).view(ctx.input_shape), None, None, None
        x, t = ctx.saved_tensors
        grad = torch.empty_like(x)
        if x.numel():
            go = grad_out.reshape(-1).contiguous()
            _launch_pointwise(
                x, t, None, grad, go, grad_scale=1.0, log_target=ctx.log_target, loss=False,
                reduce=False,
            )  # fmt: skip
        return grad.view(ctx.input_shape), None, None, None


def triton_kl_div(
    input: torch.Tensor, target: torch.Tensor, reduction: str = "mean", log_target: bool = False
) -> torch.Tensor:
    """:func:`losskit.kl_div` by the one-pass kernel (validated arguments)."""
    return KLDivFunction.apply(detach_unless_grad(input), target, reduction, bool(log_target))


# ---------------------------------------------------------------- distillation on logits


def distill_config(n_cols: int) -> tuple[int, bool, int]:
    """``(BLOCK, SINGLE, num_warps)``."""
    if n_cols <= MAX_SINGLE_BLOCK:
        block = max(triton.next_power_of_2(n_cols), 32)
        warps = 4 if block <= 2048 else 8 if block <= 8192 else 16 if block <= 16384 else 32
        return block, True, warps
    return MULTI_BLOCK, False, MULTI_WARPS


def _launch_distill(s2, t2, grad, loss_rows, go, *, temperature, beta, grad_mult):
    rows, n_cols = s2.shape
    if rows == 0:
        return
    block, single, warps = distill_config(n_cols)
    b = 0.5 if beta is None else beta
    g = s2 if grad is None else grad
    distill_kernel[(rows,)](
        s2, *s2.stride(), t2, *t2.stride(), g, *g.stride(),
        loss_rows,
        loss_rows if go is None else go,
        n_cols, 1.0 / temperature, temperature * temperature, grad_mult,
        b, math.log(b), math.log1p(-b),
        BLOCK=block,
        SINGLE=single,
        JSD=beta is not None,
        GRAD=grad is not None,
        ROW_SCALE=go is not None,
        num_warps=warps,
    )  # fmt: skip


def _divisor(student: torch.Tensor, rows: int, reduction: str) -> int:
    if reduction == "sum" or reduction == "none":
        return 1
    if reduction == "mean":
        return rows
    return student.shape[0] if student.dim() > 1 else 1  # batchmean


class DistillationFunction(torch.autograd.Function):
    """Row-wise ``T^2 KL(q || p)`` (``beta=None``) or ``T^2 JSD_beta`` of student logits."""

    @staticmethod
    def forward(ctx, student, teacher, temperature, beta, reduction):  # type: ignore[override]
        n_cols = student.shape[-1]
        s2 = student.reshape(-1, n_cols)
        t2 = teacher.reshape(-1, n_cols)
        rows = s2.shape[0]
        loss_rows = torch.empty(rows, device=student.device, dtype=torch.float32)
        divisor = _divisor(student, rows, reduction)
        fused = ctx.needs_input_grad[0] and reduction != "none"
        grad = torch.empty(rows, n_cols, device=s2.device, dtype=s2.dtype) if fused else None
        opts = {"temperature": temperature, "beta": beta}
        _launch_distill(
            s2, t2, grad, loss_rows, None, grad_mult=temperature / max(divisor, 1), **opts
        )
        ctx.reduction, ctx.shape, ctx.opts = reduction, student.shape, opts
        if fused:
            ctx.grad = grad
        elif ctx.needs_input_grad[0]:
            ctx.save_for_backward(s2, t2)
        if reduction == "none":
            return loss_rows.reshape(student.shape[:-1]).to(student.dtype)
        return (loss_rows.sum() / divisor).to(student.dtype)

    @staticmethod
    @first_order_only("distillation_kl_div / jsd")
    def backward(ctx, grad_out):  # type: ignore[override]
        if ctx.reduction != "none":
            once_only(ctx, "distillation loss")
            grad, ctx.grad = ctx.grad, None
            return scale_by_upstream_(grad, grad_out).view(ctx.shape), None, None, None, None
        s2, t2 = ctx.saved_tensors
        grad = torch.empty_like(s2)
        loss_rows = torch.empty(s2.shape[0], device=s2.device, dtype=torch.float32)
        go = grad_out.reshape(-1).contiguous()
        temperature = ctx.opts["temperature"]
        _launch_distill(s2, t2, grad, loss_rows, go, grad_mult=temperature, **ctx.opts)
        return grad.view(ctx.shape), None, None, None, None


def triton_distillation(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    beta: float | None,
    reduction: str,
) -> torch.Tensor:
    """``T^2 KL`` (``beta=None``) or ``T^2 JSD_beta`` by the kernel (validated arguments)."""
    return DistillationFunction.apply(
        detach_unless_grad(student_logits),
        teacher_logits.detach(),
        float(temperature),
        beta,
        reduction,
    )
