"""Which calls of ``kl_div`` and the distillation losses the KL kernels take, and their entry points.

Importable without ``triton``: the launchers are imported only when a kernel is about to run.
"""

from __future__ import annotations

import torch

from ..dispatch import dtype_problem, first_problem, grad_problem


def kl_div_refuses(
    input: torch.Tensor, target: torch.Tensor, reduction: str, log_target: bool
) -> str | None:
    """Why the point-wise kernel cannot take this call of ``kl_div``, or ``None``."""
    return first_problem(
        dtype_problem("input", input),
        dtype_problem("target", target),
        grad_problem(target=target),
    )


def kl_div_kernel(
    input: torch.Tensor, target: torch.Tensor, reduction: str, log_target: bool
) -> torch.Tensor:
    from .function import triton_kl_div

    return triton_kl_div(input, target, reduction, log_target)


def distillation_refuses(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float,
    beta: float | None,
    reduction: str,
) -> str | None:
    """Why the row kernel cannot take this call of ``distillation_kl_div`` / ``jsd``, or ``None``."""
    return first_problem(
        dtype_problem("student_logits", student),
        dtype_problem("teacher_logits", teacher),
        None if student.shape[-1] > 0 else "zero classes",
    )


def distillation_kernel(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float,
    beta: float | None,
    reduction: str,
) -> torch.Tensor:
    from .function import triton_distillation

    return triton_distillation(student, teacher, temperature, beta, reduction)
