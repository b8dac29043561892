"""Registry entries of the focal losses (no torch counterpart: values and gradients are checked
against the NumPy references and their closed-form gradients)."""

from __future__ import annotations

import torch

from .. import focal as F
from .. import nn as lnn
from .. import reference as R
from .._registry import ErrorCase, LossInfo, Sample, register
from ._make import rand, randint, randn, with_ignored

# ---------------------------------------------------------------- sigmoid focal


def _labels(g: torch.Generator, *shape: int) -> torch.Tensor:
    return randint(g, 2, *shape).double()


def _sigmoid_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample((randn(g, 6, 4, scale=2.0), _labels(g, 6, 4)), desc="multi-label, defaults"),
        Sample(
            (randn(g, 6, 4, scale=2.0), _labels(g, 6, 4)),
            {"alpha": -1.0, "gamma": 0.5},
            desc="alpha<0 disables balance, gamma=0.5",
        ),
        Sample((randn(g, 5, 3), rand(g, 5, 3)), {"alpha": 0.6, "gamma": 1.0}, desc="soft targets"),
        Sample((randn(g, 8), _labels(g, 8)), {"gamma": 0.0, "alpha": 0.0}, desc="gamma=0, alpha=0"),
        Sample(
            (randn(g, 8, scale=8.0), _labels(g, 8)),
            {"alpha": 1.0, "gamma": 3.0},
            desc="1-D binary, large logits, alpha=1",
        ),
        Sample((randn(g, 2, 3, 4), randint(g, 2, 2, 3, 4)), {"gamma": 1.5}, desc="3-D, int target"),
    ]


def _sigmoid_errors() -> list[ErrorCase]:
    x, t = torch.randn(3, 4), torch.rand(3, 4).round()
    return [
        ErrorCase((x, t[:, :2]), {}, ValueError, r"target size \(3, 2\).*input size \(3, 4\)"),
        ErrorCase((x.long(), t), {}, TypeError, r"input must be a floating.*int64"),
        ErrorCase((x, t > 0.5), {}, TypeError, r"target must be a floating or integer.*bool"),
        ErrorCase((x, t * 2), {}, ValueError, r"target should be between 0 and 1, found 2"),
        ErrorCase((x, t), {"gamma": -1.0}, ValueError, r"gamma must be .*>= 0, got -1", "", True),
        ErrorCase(
            (x, t), {"gamma": "2"}, TypeError, r"gamma must be a real number, got str", "", True
        ),
        ErrorCase((x, t), {"alpha": 1.5}, ValueError, r"alpha must be in \[0, 1\].*1\.5", "", True),
    ]


def _sigmoid_random(g: torch.Generator, n: int, c: int) -> Sample:
    kwargs = {"alpha": float(rand(g, 1)), "gamma": float(rand(g, 1, high=3.0))}
    return Sample((randn(g, n, c, scale=3.0), _labels(g, n, c)), kwargs, desc=f"random {n}x{c}")


register(
    LossInfo(
        name="sigmoid_focal_loss",
        family="focal",
        formula="-alpha_t (1 - p_t)^gamma log p_t,  p = sigmoid(x)",
        functional=F.sigmoid_focal_loss,
        module=lnn.SigmoidFocalLoss,
        reference=R.sigmoid_focal_loss,
        reference_grad=R.sigmoid_focal_loss_grad,
        samples=_sigmoid_samples,
        error_cases=_sigmoid_errors,
        random_sample=_sigmoid_random,
    )
)

# ---------------------------------------------------------------- softmax focal


def _softmax_samples(g: torch.Generator) -> list[Sample]:
    t = randint(g, 4, 6)
    t_ign = with_ignored(t, g, -100)
    t_ign[0] = 1  # at least one kept target
    alpha = rand(g, 4, low=0.2, high=2.0)
    kt = with_ignored(randint(g, 3, 2, 4, 2), g, -100)
    return [
        Sample((randn(g, 6, 4, scale=2.0), t), desc="indices, defaults"),
        Sample(
            (randn(g, 6, 4, scale=2.0), t_ign),
            {"alpha": alpha, "gamma": 0.5},
            desc="alpha + ignored, gamma=0.5",
        ),
        Sample(
            (randn(g, 6, 4), t), {"ignore_index": 2, "gamma": 1.0}, desc="ignore_index in range"
        ),
        Sample((randn(g, 6, 4), t_ign), {"alpha": alpha, "gamma": 0.0}, desc="gamma=0 (= CE)"),
        Sample(
            (randn(g, 2, 3, 4, 2), kt),
            {"alpha": rand(g, 3, low=0.5), "gamma": 3.0},
            desc="K-dim (N,C,d1,d2)",
        ),
        Sample((randn(g, 5), randint(g, 5)), {"gamma": 1.5}, desc="no batch (C,)"),
        Sample((randn(g, 5, 3, scale=8.0), randint(g, 3, 5)), desc="large logits"),
        Sample((randn(g, 4, 1), torch.zeros(4, dtype=torch.int64)), desc="single class"),
    ]


def _softmax_errors() -> list[ErrorCase]:
    x, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    return [
        ErrorCase((x, torch.tensor([0, 1, 3, 1])), {}, IndexError, r"Target 3 is out of bounds"),
        ErrorCase((x, t.double()), {}, TypeError, r"target must be an integer tensor.*float64"),
        ErrorCase((x, t[:3]), {}, ValueError, r"Expected target size \(4,\).*got \(3,\)"),
        ErrorCase((x.long(), t), {}, TypeError, r"input must be a floating.*int64"),
        ErrorCase(
            (x, t), {"alpha": torch.ones(4)}, ValueError, r"alpha must be a 1-D tensor.*\(3\)"
        ),
        ErrorCase(
            (x, t), {"alpha": torch.ones(2, 3)}, ValueError, r"alpha must be a 1-D", "", True
        ),
        ErrorCase((x, t), {"alpha": 0.25}, TypeError, r"alpha must be None or a 1-D", "", True),
        ErrorCase((x, t), {"gamma": -0.5}, ValueError, r"gamma must be .*>= 0", "", True),
        ErrorCase(
            (x, t), {"ignore_index": 1.5}, TypeError, r"ignore_index must be an int", "", True
        ),
    ]


def _softmax_random(g: torch.Generator, n: int, c: int) -> Sample:
    t = with_ignored(randint(g, c, n), g, -100, frac=0.2)
    kwargs = {"gamma": float(rand(g, 1, high=3.0))}
    if bool(randint(g, 2, 1)):
        kwargs["alpha"] = rand(g, c, low=0.1, high=2.0)
    return Sample((randn(g, n, c, scale=3.0), t), kwargs, desc=f"random n={n} c={c}")


register(
    LossInfo(
        name="softmax_focal_loss",
        family="focal",
        formula="-alpha_y (1 - p_y)^gamma log p_y,  p = softmax(x)",
        functional=F.softmax_focal_loss,
        module=lnn.SoftmaxFocalLoss,
        reference=R.softmax_focal_loss,
        reference_grad=R.softmax_focal_loss_grad,
        samples=_softmax_samples,
        error_cases=_softmax_errors,
        random_sample=_softmax_random,
    )
)
