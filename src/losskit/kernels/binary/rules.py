"""Which calls of the binary losses on logits the one-pass kernel takes, and its entry points.

Importable without ``triton``: the launcher is imported only when the kernel is about to run.
"""

from __future__ import annotations

import torch

from ..._autograd import detach_unless_grad
from ..dispatch import dtype_problem, first_problem, grad_problem


def bce_with_logits_refuses(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    reduction: str,
    pos_weight: torch.Tensor | None,
) -> str | None:
    """Why the kernel cannot take this call of ``binary_cross_entropy_with_logits``, or ``None``."""
    return first_problem(
        dtype_problem("input", input),
        grad_problem(target=target, weight=weight, pos_weight=pos_weight),
    )


def bce_with_logits_kernel(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    reduction: str,
    pos_weight: torch.Tensor | None,
) -> torch.Tensor:
    from .function import triton_binary_cross_entropy_with_logits

    return triton_binary_cross_entropy_with_logits(input, target, weight, reduction, pos_weight)


def sigmoid_focal_refuses(
    input: torch.Tensor,
    target: torch.Tensor,
    alpha: float,
    gamma: float,
    reduction: str,
    weight: torch.Tensor | None,
    pos_weight: torch.Tensor | None,
    ignore_index: int | None,
) -> str | None:
    """The calls the one-pass Triton kernel (kernels/binary) cannot take, and why."""
    return first_problem(
        dtype_problem("input", input),
        None if pos_weight is None else "pos_weight is not supported by the focal kernel",
        None if ignore_index is None else "ignore_index is not supported by the focal kernel",
        grad_problem(weight=weight),
    )


def sigmoid_focal_kernel(
    input: torch.Tensor,
    target: torch.Tensor,
    alpha: float,
    gamma: float,
    reduction: str,
    weight: torch.Tensor | None,
    pos_weight: torch.Tensor | None,
    ignore_index: int | None,
) -> torch.Tensor:
    from .function import BinaryLossFunction  # imports triton: only here

    # The target is a constant (no gradient flows to it), as in the formula.
    return BinaryLossFunction.apply(
        detach_unless_grad(input), target.detach(), weight, None, reduction, True, alpha, gamma
    )
