"""Autograd Function and launcher of the one-pass binary losses (BCE with logits, focal)."""

from __future__ import annotations

import torch
import triton

from ..._autograd import detach_unless_grad, first_order_only
from ..common.function import once_only, scale_by_upstream_
from .kernel import binary_kernel

BLOCK = 2048


def _broadcast_operand(
    t: torch.Tensor | None, input: torch.Tensor
) -> tuple[int, torch.Tensor | None]:
    """``(mode, flat tensor)``: 0 absent, 1 one value per element, 2 one per last-dim index.

    A weight of shape ``(C,)`` (or ``(1, ..., 1, C)``, or a single value) indexes the last
    dimension with ``offset % C`` and is never expanded; any other broadcast is materialised.
    """
    if t is None:
        return 0, None
    t = t.to(device=input.device)
    last = input.shape[-1] if input.dim() > 0 else 1
    squeezed = [d for d in t.shape]
    while squeezed and squeezed[0] == 1 and len(squeezed) > 1:
        squeezed.pop(0)
    if t.numel() == 1:
        return 2, t.reshape(1).expand(last).contiguous()
    if squeezed == [last]:
        return 2, t.reshape(last).contiguous()
    return 1, t.expand(input.shape).contiguous().view(-1)


def _launch(x, t, w, pw, out, grad, go, *, n_last, grad_scale, alpha, gamma, focal, loss, reduce):
    n = x.numel()
    grid = (triton.cdiv(n, BLOCK),)
    dummy = x
    binary_kernel[grid](
        x, t,
        dummy if w[1] is None else w[1],
        dummy if pw[1] is None else pw[1],
        dummy if out is None else out,
        dummy if grad is None else grad,
        dummy if go is None else go,
        n, n_last, grad_scale, alpha, gamma,
        BLOCK=BLOCK,
        FOCAL=focal,
        W_MODE=w[0],
        PW_MODE=pw[0],
        USE_ALPHA=alpha >= 0.0,
        LOSS=loss,
        REDUCE=reduce,
        GRAD=grad is not None,
        ROW_SCALE=go is not None,
        # gamma 0, 1, 2, ... by multiplication (no log/exp); -1 means "use exp(gamma log q)".
        GAMMA_INT=int(gamma) if focal and float(gamma).is_integer() and gamma <= 8 else -1,
        num_warps=8,
    )  # fmt: skip


class BinaryLossFunction(torch.autograd.Function):
    """Element-wise BCE-with-logits or sigmoid focal loss, gradient fused into the forward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        input: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        pos_weight: torch.Tensor | None,
        reduction: str,
        focal: bool,
        alpha: float,
        gamma: float,
    ) -> torch.Tensor:
        x = input.contiguous().view(-1)
        t = target.contiguous().view(-1)
        w = _broadcast_operand(weight, input)
        pw = _broadcast_operand(pos_weight, input)
        n = x.numel()
        n_last = input.shape[-1] if input.dim() > 0 else 1
        opts = {"n_last": n_last, "alpha": alpha, "gamma": gamma, "focal": focal}
        ctx.reduction = reduction
        ctx.input_shape = input.shape
        if reduction == "none":
            out = torch.empty_like(x)
            if n:
                _launch(
                    x, t, w, pw, out, None, None, grad_scale=1.0, loss=True, reduce=False, **opts
                )
            if ctx.needs_input_grad[0]:
                ctx.save_for_backward(x, t, w[1], pw[1])
                ctx.modes = (w[0], pw[0])
                ctx.opts = opts
            return out.view(input.shape)
        grad = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        if n == 0:
            total = x.new_zeros((), dtype=torch.float32)
        else:
            partial = torch.empty(triton.cdiv(n, BLOCK), device=x.device, dtype=torch.float32)
            scale = 1.0 / n if reduction == "mean" else 1.0
            _launch(
                x, t, w, pw, partial, grad, None, grad_scale=scale, loss=True, reduce=True, **opts
            )
            total = partial.sum()
        # mean of nothing is NaN (0/0), as torch.
        out = total / n if reduction == "mean" else total
        ctx.grad = grad
        return out.to(input.dtype)

    @staticmethod
    @first_order_only("binary cross entropy / sigmoid focal loss")
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        none = (None,) * 7
        if ctx.reduction != "none":
            once_only(ctx, "binary loss")
            grad = ctx.grad
            ctx.grad = None
            scale_by_upstream_(grad, grad_out)
            return grad.view(ctx.input_shape), *none
        x, t, w, pw = ctx.saved_tensors
        grad = torch.empty_like(x)
        if x.numel():
            go = grad_out.reshape(-1).contiguous()
            _launch(
                x, t, (ctx.modes[0], w), (ctx.modes[1], pw), None, grad, go,
                grad_scale=1.0, loss=False, reduce=False, **ctx.opts,
            )  # fmt: skip
        return grad.view(ctx.input_shape), *none


def triton_binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`losskit.binary_cross_entropy_with_logits` by the one-pass kernel (validated args)."""
    return BinaryLossFunction.apply(
        detach_unless_grad(input), target, weight, pos_weight, reduction, False, -1.0, 0.0
    )


def triton_sigmoid_focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """:func:`losskit.sigmoid_focal_loss` by the one-pass kernel (validated args)."""
    return BinaryLossFunction.apply(
        detach_unless_grad(input), target, None, None, reduction, True, float(alpha), float(gamma)
    )
