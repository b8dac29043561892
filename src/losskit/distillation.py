"""Knowledge-distillation losses on logits: temperature-scaled KL divergence and generalised JSD.

Both take raw student and teacher logits with the classes in the **last** dimension (``(N, C)``
or ``(B, T, V)`` for a language model), apply ``log_softmax`` inside at temperature ``T`` and
multiply by ``T**2`` so that the gradient's scale does not depend on ``T`` (Hinton et al. 2015).
The teacher is a constant: no gradient flows to ``teacher_logits``. On CUDA (with ``triton``) a
fused kernel reads each row once and writes the student gradient in the forward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_floating, check_number, check_same_shape
from ._dispatch import Backends
from ._precision import upcast
from ._reduction import REDUCTIONS_WITH_BATCHMEAN, check_reduction
from .kernels.kl.rules import distillation_kernel, distillation_refuses

__all__ = ["distillation_kl_div", "jsd"]


def check_temperature(temperature: object) -> float:
    t = check_number("temperature", temperature)
    if not (0.0 < t < math.inf):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return t


def check_beta(beta: object) -> float:
    b = check_number("beta", beta)
    if not (0.0 < b < 1.0):
        raise ValueError(
            f"beta must be in (0, 1), got {beta!r} (use distillation_kl_div for a plain KL)"
        )
    return b


def _check_logits(student: object, teacher: object) -> tuple[torch.Tensor, torch.Tensor]:
    student = check_floating("student_logits", student)
    teacher = check_floating("teacher_logits", teacher)
    check_same_shape("student_logits", student, "teacher_logits", teacher)
    if student.dim() == 0:
        raise ValueError("student_logits must have a class dimension (last), got a 0-D tensor")
    return student, teacher


def _reduce_rows(rows: torch.Tensor, student: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    if reduction == "mean":
        return rows.sum() / rows.numel()  # NaN when empty, as every losskit mean
    return rows.sum() / (student.shape[0] if student.dim() > 1 else 1)  # batchmean


def distillation_kl_div(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    reduction: str = "batchmean",
) -> torch.Tensor:
    r"""Temperature-scaled KL divergence from the teacher's to the student's softmax (distillation).

    With :math:`p = \operatorname{softmax}(s / T)` and :math:`q = \operatorname{softmax}(t / T)`
    over the last dimension, per row:

    .. math:: \ell = T^2\, \mathrm{KL}(q \,\|\, p) = T^2 \sum_c q_c (\log q_c - \log p_c)

    Args:
        student_logits: ``(*, C)``, floating; the gradient flows here.
        teacher_logits: same shape; treated as a constant (detached).
        temperature: :math:`T > 0`.
        reduction: ``"batchmean"`` (default: the sum over rows divided by ``student_logits.shape[0]``,
            1 for a single ``(C,)`` row), ``"mean"`` (over all rows, e.g. ``B·T`` tokens),
            ``"sum"`` or ``"none"`` (shape ``student_logits.shape[:-1]``).

    Returns:
        Scalar, or one value per row; dtype of ``student_logits`` (computed in float32 at least).

    Edge cases: empty rows give NaN for ``mean``/``batchmean`` and 0 for ``sum``; a teacher
    probability that underflows to 0 contributes 0; logits of ±1e4 stay finite.

    Example:
        >>> s = torch.randn(8, 100, requires_grad=True)
        >>> losskit.distillation_kl_div(s, torch.randn(8, 100), temperature=2.0).backward()

    Equals ``T**2 * torch.nn.functional.kl_div(log_softmax(s / T), log_softmax(t / T),
    log_target=True, reduction="batchmean")`` for 2-D inputs (Hinton, Vinyals and Dean,
    "Distilling the Knowledge in a Neural Network", 2015).
    """
    student, teacher = _check_logits(student_logits, teacher_logits)
    temperature = check_temperature(temperature)
    reduction = check_reduction(reduction, REDUCTIONS_WITH_BATCHMEAN)
    return _DISTILLATION_KL(student, teacher.detach(), temperature, None, reduction)


def _distillation_kl_formula(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float,
    beta: None,
    reduction: str,
) -> torch.Tensor:
    log_p = F.log_softmax(upcast(student) / temperature, dim=-1)
    log_q = F.log_softmax(upcast(teacher) / temperature, dim=-1)
    q = torch.exp(log_q)
    # where(): a teacher probability of exactly 0 contributes 0, not 0 * (-inf); a NaN one
    # (NaN or inf teacher logits) stays NaN, as in torch's kl_div.
    per_class = torch.where(q == 0, log_p.new_zeros(()), q * (log_q - log_p))
    rows = temperature**2 * per_class.sum(-1)
    return _reduce_rows(rows, student, reduction).to(student.dtype)


_DISTILLATION_KL = Backends(
    "distillation_kl_div",
    formula=_distillation_kl_formula,
    kernel=distillation_kernel,
    refuses={"kernel": distillation_refuses},
)
distillation_kl_div.backends = _DISTILLATION_KL


def jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float = 0.5,
    temperature: float = 1.0,
    reduction: str = "batchmean",
) -> torch.Tensor:
    r"""Generalised Jensen-Shannon divergence between teacher and student softmax (distillation).

    With :math:`p = \operatorname{softmax}(s / T)`, :math:`q = \operatorname{softmax}(t / T)` over
    the last dimension and the mixture :math:`m = \beta q + (1 - \beta) p`, per row:

    .. math::
        \ell = T^2 \left[\beta\, \mathrm{KL}(q \,\|\, m) + (1 - \beta)\, \mathrm{KL}(p \,\|\, m)\right]

    ``beta = 0.5`` is the symmetric JSD (bounded by :math:`T^2 \log 2`); as :math:`\beta \to 0`
    it behaves like :math:`\beta\,\mathrm{KL}(q\|p)`, as :math:`\beta \to 1` like
    :math:`(1-\beta)\,\mathrm{KL}(p\|q)` (the generalised JSD of Agarwal et al., "On-Policy
    Distillation of Language Models", 2024, as in Liger-Kernel's ``LigerJSD``).

    Args:
        student_logits: ``(*, C)``, floating; the gradient flows here.
        teacher_logits: same shape; treated as a constant (detached).
        beta: :math:`\beta \in (0, 1)`.
        temperature: :math:`T > 0`.
        reduction: ``"batchmean"`` (default), ``"mean"``, ``"sum"`` or ``"none"``, as
            :func:`distillation_kl_div`.

    Returns:
        Scalar, or one value per row; dtype of ``student_logits``.

    Edge cases as :func:`distillation_kl_div`.

    Example:
        >>> s = torch.randn(4, 32, 1000, requires_grad=True)
        >>> losskit.jsd(s, torch.randn(4, 32, 1000), beta=0.5, reduction="mean").backward()
    """
    student, teacher = _check_logits(student_logits, teacher_logits)
    beta = check_beta(beta)
    temperature = check_temperature(temperature)
    reduction = check_reduction(reduction, REDUCTIONS_WITH_BATCHMEAN)
    return _JSD(student, teacher.detach(), temperature, beta, reduction)


def _jsd_formula(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float,
    beta: float,
    reduction: str,
) -> torch.Tensor:
    log_p = F.log_softmax(upcast(student) / temperature, dim=-1)
    log_q = F.log_softmax(upcast(teacher) / temperature, dim=-1)
    a, b = math.log(beta) + log_q, math.log1p(-beta) + log_p
    zero = log_p.new_zeros(())
    # A class both distributions give probability 0 (the same masked class) has log m = -inf;
    # logaddexp's backward there is NaN even with a zero incoming gradient, so feed it zeros
    # (its terms are dropped below anyway).
    both_zero = torch.isneginf(a) & torch.isneginf(b)
    log_m = torch.logaddexp(torch.where(both_zero, zero, a), torch.where(both_zero, zero, b))
    q, p = torch.exp(log_q), torch.exp(log_p)
    # A probability of 0 (masked, or underflow) contributes 0. Its log is also replaced by 0
    # inside the formula: the branch where() drops still gets a gradient, and 0 * (-inf) there
    # would make the whole row's gradient NaN.
    log_q, log_p = torch.where(q > 0, log_q, zero), torch.where(p > 0, log_p, zero)
    term_q = torch.where(q > 0, beta * q * (log_q - log_m), zero)
    term_p = torch.where(p > 0, (1.0 - beta) * p * (log_p - log_m), zero)
    rows = temperature**2 * (term_q + term_p).sum(-1)
    return _reduce_rows(rows, student, reduction).to(student.dtype)


_JSD = Backends(
    "jsd",
    formula=_jsd_formula,
    kernel=distillation_kernel,
    refuses={"kernel": distillation_refuses},
)
jsd.backends = _JSD
