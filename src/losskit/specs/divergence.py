"""Registry entries of the divergences.

Samples use strictly positive targets: at ``p = 0`` the gradient with respect to the target is
unbounded (NaN in torch and here) and finite differences of the reference are meaningless. Zero
and negative targets are edge samples, compared with torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as TF

from .. import divergence as F
from .. import nn as lnn
from .. import reference as R
from .._reduction import REDUCTIONS_WITH_BATCHMEAN
from .._registry import ErrorCase, LossInfo, Sample, register
from ._make import F64, probs, rand, randn


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def _log_probs(g: torch.Generator, *shape: int, dim: int = 1) -> torch.Tensor:
    return torch.log_softmax(randn(g, *shape), dim=dim)


def _kl_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(_log_probs(g, 4, 5), probs(g, 4, 5)), desc="(N, C) distributions"),
        Sample(
            args=(_log_probs(g, 4, 5), _log_probs(g, 4, 5)),
            kwargs={"log_target": True},
            desc="log_target",
        ),
        Sample(args=(_log_probs(g, 2, 3, 4), probs(g, 2, 3, 4)), desc="(N, C, d) over dim 1"),
        Sample(args=(randn(g, 3, 4), rand(g, 3, 4, low=0.05, high=2.0)), desc="unnormalised"),
        Sample(
            args=(randn(g, 3, 4), randn(g, 3, 4)),
            kwargs={"log_target": True},
            desc="unnormalised log_target",
        ),
        Sample(
            args=(_log_probs(g, 6, dim=0), probs(g, 6, dim=0)), desc="1-D (batchmean / size(0))"
        ),
        Sample(
            args=(randn(g, 1).reshape(()), rand(g, 1, low=0.1).reshape(())),
            desc="0-D (batchmean = sum)",
        ),
    ]


def _kl_errors() -> list[ErrorCase]:
    x = torch.randn(3, 4).log_softmax(1)
    p = torch.rand(3, 4)
    return [
        ErrorCase(
            args=(x, p[:, :2]),
            kwargs={},
            error=ValueError,
            match=r"target size \(3, 2\).*input size \(3, 4\)",
        ),
        ErrorCase(
            args=(x, p[0]),
            kwargs={},
            error=ValueError,
            match=r"target size \(4,\).*input size \(3, 4\)",
        ),
        ErrorCase(
            args=(x.long(), p), kwargs={}, error=TypeError, match=r"input must be a floating.*int64"
        ),
        ErrorCase(
            args=(x, p.long()),
            kwargs={},
            error=TypeError,
            match=r"target must be a floating.*int64",
        ),
        ErrorCase(
            args=(x, p),
            kwargs={"log_target": 1},
            error=TypeError,
            match=r"log_target must be a bool, got int",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, p),
            kwargs={"reduction": "batch_mean"},
            error=ValueError,
            match=r"'batch_mean'.*'batchmean'",
            desc="",
            in_constructor=True,
        ),
    ]


def _kl_edges(g: torch.Generator) -> list[Sample]:
    # Values stay below float16's maximum (65504), so torch is finite in every dtype.
    return [
        Sample(args=(randn(g, 0, 4), rand(g, 0, 4)), desc="empty batch"),
        Sample(args=(randn(g, 2, 0), rand(g, 2, 0)), desc="empty support"),
        Sample(
            args=(_log_probs(g, 2, 3), _t(0.0, 0.5, 0.5, 1.0, 0.0, 0.0).reshape(2, 3)),
            desc="zero targets (contribute 0)",
        ),
        Sample(
            args=(_log_probs(g, 2, 3), _t(0.2, -0.3, 1.1, 0.5, 0.5, 0.0).reshape(2, 3)),
            desc="a negative target (NaN)",
        ),
        Sample(
            args=(_t(-1e4, 0.0, -1e4, -5.0), _t(0.5, 0.25, 0.0, 0.25)),
            desc="log-probabilities -1e4",
        ),
        Sample(
            args=(_t(-1e4, 0.0, -1e4, -5.0), _t(0.0, -1e4, -1e4, -1.0)),
            kwargs={"log_target": True},
            desc="log_target, -1e4 on both sides",
        ),
        Sample(args=(_t(-0.5).reshape(()), _t(0.25).reshape(())), desc="0-D"),
    ]


register(
    LossInfo(
        name="kl_div",
        family="divergence",
        formula="p (log p - x)  (or exp(t) (t - x) for log_target); batchmean = sum / N",
        functional=F.kl_div,
        module=lnn.KLDivLoss,
        reference=R.kl_div,
        reference_grad=R.kl_div_grad,
        torch_functional=TF.kl_div,
        reductions=REDUCTIONS_WITH_BATCHMEAN,
        samples=_kl_samples,
        error_cases=_kl_errors,
        edge_samples=_kl_edges,
        random_sample=lambda g, n, c: Sample(
            args=(_log_probs(g, n, c), probs(g, n, c)),
            kwargs={"log_target": False},
        ),
        # Differentiable in the target too, as torch.
        grad_args=(0, 1),
    )
)
