"""Registry entries of the binary surrogate losses (labels in ``{-1, 1}``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as TF

from .. import nn as lnn
from .. import reference as R
from .. import surrogate as F
from .._registry import ErrorCase, LossInfo, Sample, register
from ._make import randint, randn, signs


def _torch_hinge(
    input: torch.Tensor, target: torch.Tensor, margin: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """The binary hinge in torch: ``margin_ranking_loss`` against a zero second input."""
    return TF.margin_ranking_loss(
        input, torch.zeros_like(input), target, margin, reduction=reduction
    )


def _samples(with_margin: bool) -> Callable[[torch.Generator], list[Sample]]:
    def samples(g: torch.Generator) -> list[Sample]:
        out = [
            Sample(args=(randn(g, 6, 3, scale=2.0), signs(g, 6, 3)), desc="(N, C) float ±1"),
            Sample(args=(randn(g, 9, scale=2.0), signs(g, 9)), desc="1-D"),
            Sample(args=(randn(g, 2, 3, 2), randint(g, 2, 2, 3, 2) * 2 - 1), desc="3-D, int64 ±1"),
            Sample(args=(randn(g, 1).reshape(()), signs(g, 1).reshape(())), desc="scalar"),
        ]
        if with_margin:
            out += [
                Sample(
                    args=(randn(g, 8, scale=2.0), signs(g, 8)),
                    kwargs={"margin": 0.5},
                    desc="margin=0.5",
                ),
                Sample(
                    args=(randn(g, 8), signs(g, 8)),
                    kwargs={"margin": 0.0},
                    desc="margin=0 (perceptron)",
                ),
            ]
        return out

    return samples


def _errors(with_margin: bool) -> Callable[[], list[ErrorCase]]:
    def errors() -> list[ErrorCase]:
        x, y = torch.randn(4, 3), torch.ones(4, 3)
        out = [
            ErrorCase(
                args=(x, y[:, :2]),
                kwargs={},
                error=ValueError,
                match=r"target size \(4, 2\).*input size \(4, 3\)",
            ),
            ErrorCase(
                args=(x.long(), y),
                kwargs={},
                error=TypeError,
                match=r"input must be a floating.*int64",
            ),
            ErrorCase(
                args=(x, y.bool()),
                kwargs={},
                error=TypeError,
                match=r"target must be a floating or integer.*bool",
            ),
            ErrorCase(
                args=(x, y * 0),
                kwargs={},
                error=ValueError,
                match=r"target must contain only -1 and 1.*found 0",
            ),
            ErrorCase(
                args=(x, y.clone().fill_(0.5)), kwargs={}, error=ValueError, match=r"found 0\.5"
            ),
            ErrorCase(
                args=([1.0], y),
                kwargs={},
                error=TypeError,
                match=r"input must be a torch.Tensor, got list",
            ),
        ]
        if with_margin:
            out += [
                ErrorCase(
                    args=(x, y),
                    kwargs={"margin": -1.0},
                    error=ValueError,
                    match=r"margin must be .*>= 0",
                    desc="",
                    in_constructor=True,
                ),
                ErrorCase(
                    args=(x, y),
                    kwargs={"margin": float("inf")},
                    error=ValueError,
                    match=r"margin.*inf",
                    desc="",
                    in_constructor=True,
                ),
                ErrorCase(
                    args=(x, y),
                    kwargs={"margin": None},
                    error=TypeError,
                    match=r"margin must be a real",
                    desc="",
                    in_constructor=True,
                ),
            ]
        return out

    return errors


def _edges(g: torch.Generator) -> list[Sample]:
    big = torch.tensor([1e4, -1e4, 1e4, -1e4, 0.0, 30.0], dtype=torch.float64)
    return [
        Sample(args=(randn(g, 0, 3), signs(g, 0, 3)), desc="empty"),
        Sample(
            args=(big, torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0, -1.0], dtype=torch.float64)),
            desc="scores ±1e4",
        ),
    ]


def _random(g: torch.Generator, n: int, c: int) -> Sample:
    return Sample(args=(randn(g, n, c, scale=3.0), signs(g, n, c)), desc=f"random {n}x{c}")


def _random_margin(g: torch.Generator, n: int, c: int) -> Sample:
    margin = float(torch.rand(1, generator=g, dtype=torch.float64) * 2)
    return Sample(args=(randn(g, n, c, scale=3.0), signs(g, n, c)), kwargs={"margin": margin})


register(
    LossInfo(
        name="hinge_loss",
        family="surrogate",
        formula="max(0, margin - y f),  y in {-1, 1}",
        functional=F.hinge_loss,
        module=lnn.HingeLoss,
        reference=R.hinge_loss,
        reference_grad=R.hinge_loss_grad,
        torch_functional=_torch_hinge,
        samples=_samples(True),
        error_cases=_errors(True),
        edge_samples=_edges,
        random_sample=_random_margin,
    )
)

register(
    LossInfo(
        name="squared_hinge_loss",
        family="surrogate",
        formula="max(0, margin - y f)^2,  y in {-1, 1}",
        functional=F.squared_hinge_loss,
        module=lnn.SquaredHingeLoss,
        reference=R.squared_hinge_loss,
        reference_grad=R.squared_hinge_loss_grad,
        samples=_samples(True),
        error_cases=_errors(True),
        random_sample=_random_margin,
    )
)

register(
    LossInfo(
        name="exponential_loss",
        family="surrogate",
        formula="exp(-y f),  y in {-1, 1}",
        functional=F.exponential_loss,
        module=lnn.ExponentialLoss,
        reference=R.exponential_loss,
        reference_grad=R.exponential_loss_grad,
        samples=_samples(False),
        error_cases=_errors(False),
        random_sample=_random,
    )
)

register(
    LossInfo(
        name="logistic_loss",
        family="surrogate",
        formula="log(1 + exp(-y f)) = -log sigmoid(y f),  y in {-1, 1}",
        functional=F.logistic_loss,
        module=lnn.LogisticLoss,
        reference=R.logistic_loss,
        reference_grad=R.logistic_loss_grad,
        torch_functional=TF.soft_margin_loss,
        samples=_samples(False),
        error_cases=_errors(False),
        edge_samples=_edges,
        random_sample=_random,
        # torch computes log1p(exp(-y f)): inf with a NaN gradient once exp overflows (-y f = 1e4);
        # ours is finite there (values are compared with the reference where torch overflows).
        edge_grad_parity=False,
    )
)

register(
    LossInfo(
        name="zero_one_loss",
        family="surrogate",
        formula="1[y f <= 0]  (a metric: no gradient)",
        functional=F.zero_one_loss,
        module=lnn.ZeroOneLoss,
        reference=R.zero_one_loss,
        samples=_samples(False),
        error_cases=_errors(False),
        random_sample=_random,
        differentiable=False,
    )
)
