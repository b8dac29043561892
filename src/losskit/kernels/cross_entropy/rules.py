"""Which calls of :func:`losskit.cross_entropy` the fused kernel takes, and its entry point.

Importable without ``triton``: the launcher is imported only when the kernel is about to run.
"""

from __future__ import annotations

import torch

from ..dispatch import dtype_problem, first_problem, grad_problem


def cross_entropy_refuses(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> str | None:
    """Why the kernel cannot take this (validated) call, or ``None``."""
    return first_problem(
        "probability targets are not supported" if target.is_floating_point() else None,
        dtype_problem("input", input),
        None if input.shape[1 if input.dim() > 1 else 0] > 0 else "zero classes",
        grad_problem(weight=weight),
    )


def cross_entropy_kernel(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> torch.Tensor:
    """:func:`losskit.cross_entropy` by the kernel; ``input`` ``(C,)``, ``(N, C)`` or ``(N, C, ...)``."""
    from .function import triton_cross_entropy

    return triton_cross_entropy(
        input,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )
