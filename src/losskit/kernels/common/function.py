"""Launchers of the shared kernels."""

from __future__ import annotations

import torch
import triton

from .kernel import scale_by_upstream_kernel

_SCALE_BLOCK = 4096


def scale_by_upstream_(grad: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
    """Multiply the contiguous ``grad`` in place by the scalar ``grad_output`` (no host sync)."""
    n = grad.numel()
    if n == 0:
        return grad
    go = grad_output.reshape(1).to(device=grad.device)
    if not go.is_contiguous():
        go = go.contiguous()
    grid = (triton.cdiv(n, _SCALE_BLOCK),)
    scale_by_upstream_kernel[grid](grad, n, go, BLOCK=_SCALE_BLOCK, num_warps=8)
    return grad


def once_only(ctx: object, what: str) -> None:
    """Raise on a second backward through a Function that consumes a precomputed gradient."""
    if getattr(ctx, "_consumed", False):
        raise RuntimeError(
            f"{what}: the gradient was computed in the forward and already consumed by a first "
            "backward; a second backward (retain_graph=True) is not supported by the fused kernel. "
            "Run the loss again, or use losskit.kernels.use_kernels('never') for this call."
        )
    ctx._consumed = True  # type: ignore[attr-defined]
