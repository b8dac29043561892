"""Registry entries of the distillation losses on logits.

``distillation_kl_div`` is compared with a torch composition (``T**2 * kl_div(log_softmax(s/T),
log_softmax(t/T), log_target=True)`` summed per row, then reduced), an independent formula.
"""

from __future__ import annotations

import torch
import torch.nn.functional as TF

from .. import distillation as F
from .._reduction import REDUCTIONS_WITH_BATCHMEAN
from .._registry import ErrorCase, LossInfo, Sample, register
from ..nn import distillation as lnn
from ..reference import distillation as R
from ._make import F64, randn


def _torch_kd(student, teacher, temperature=1.0, reduction="batchmean"):
    log_p = TF.log_softmax(student / temperature, dim=-1)
    log_q = TF.log_softmax(teacher.detach() / temperature, dim=-1)
    rows = temperature**2 * TF.kl_div(log_p, log_q, reduction="none", log_target=True).sum(-1)
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    if reduction == "mean":
        return rows.mean()
    return rows.sum() / (student.shape[0] if student.dim() > 1 else 1)


def _samples(g: torch.Generator, jsd: bool) -> list[Sample]:
    extra = {"beta": 0.3} if jsd else {}
    return [
        Sample(args=(randn(g, 4, 6), randn(g, 4, 6)), desc="(N, C)"),
        Sample(
            args=(randn(g, 4, 6, scale=3.0), randn(g, 4, 6)),
            kwargs={"temperature": 2.5, **extra},
            desc="T=2.5",
        ),
        Sample(
            args=(randn(g, 2, 3, 5), randn(g, 2, 3, 5)),
            kwargs={"temperature": 0.7},
            desc="(B, T, V)",
        ),
        Sample(args=(randn(g, 7), randn(g, 7)), kwargs=extra, desc="one row (C,)"),
    ]


def _errors(jsd: bool) -> list[ErrorCase]:
    s, t = torch.randn(3, 4), torch.randn(3, 4)
    cases = [
        ErrorCase(
            args=(s, t[:, :2]),
            kwargs={},
            error=ValueError,
            match=r"teacher_logits size \(3, 2\).*\(3, 4\)",
        ),
        ErrorCase(
            args=(s.long(), t),
            kwargs={},
            error=TypeError,
            match=r"student_logits must be a floating",
        ),
        ErrorCase(
            args=(s, t),
            kwargs={"temperature": 0.0},
            error=ValueError,
            match=r"temperature.*> 0",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(args=(s[0, 0], t[0, 0]), kwargs={}, error=ValueError, match=r"class dimension"),
    ]
    if jsd:
        cases.append(
            ErrorCase(
                args=(s, t),
                kwargs={"beta": 1.0},
                error=ValueError,
                match=r"beta must be in \(0, 1\)",
                desc="",
                in_constructor=True,
            )
        )
    return cases


def _edges(g: torch.Generator) -> list[Sample]:
    big = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype=F64)
    return [
        Sample(args=(randn(g, 0, 4), randn(g, 0, 4)), desc="empty"),
        Sample(args=(big, big.flip(1)), desc="logits ±1e4"),
    ]


register(
    LossInfo(
        name="distillation_kl_div",
        family="distillation",
        formula="T^2 KL(softmax(t/T) || softmax(s/T)) per row (classes last)",
        functional=F.distillation_kl_div,
        module=lnn.DistillationKLDivLoss,
        reference=R.distillation_kl_div,
        torch_functional=_torch_kd,
        samples=lambda g: _samples(g, False),
        error_cases=lambda: _errors(False),
        edge_samples=_edges,
        reductions=REDUCTIONS_WITH_BATCHMEAN,
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, c, scale=3.0), randn(g, n, c)), kwargs={"temperature": 2.0}
        ),
    )
)

register(
    LossInfo(
        name="jsd",
        family="distillation",
        formula="T^2 [b KL(q || m) + (1-b) KL(p || m)], m = b q + (1-b) p",
        functional=F.jsd,
        module=lnn.JSDLoss,
        reference=R.jsd,
        samples=lambda g: _samples(g, True),
        error_cases=lambda: _errors(True),
        reductions=REDUCTIONS_WITH_BATCHMEAN,
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, c, scale=3.0), randn(g, n, c)), kwargs={"beta": 0.4}
        ),
    )
)
