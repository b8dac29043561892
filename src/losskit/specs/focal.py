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
    t_ign = _labels(g, 6, 4)
    t_ign[0, 1] = t_ign[3, 2] = t_ign[5, 0] = -1.0
    return [
        Sample(args=(randn(g, 6, 4, scale=2.0), _labels(g, 6, 4)), desc="multi-label, defaults"),
        Sample(
            args=(randn(g, 6, 4, scale=2.0), _labels(g, 6, 4)),
            kwargs={"alpha": -1.0, "gamma": 0.5},
            desc="alpha<0 disables balance, gamma=0.5",
        ),
        Sample(
            args=(randn(g, 5, 3), rand(g, 5, 3)),
            kwargs={"alpha": 0.6, "gamma": 1.0},
            desc="soft targets",
        ),
        Sample(
            args=(randn(g, 8), _labels(g, 8)),
            kwargs={"gamma": 0.0, "alpha": 0.0},
            desc="gamma=0, alpha=0",
        ),
        Sample(
            args=(randn(g, 8, scale=8.0), _labels(g, 8)),
            kwargs={"alpha": 1.0, "gamma": 3.0},
            desc="1-D binary, large logits, alpha=1",
        ),
        Sample(
            args=(randn(g, 2, 3, 4), randint(g, 2, 2, 3, 4)),
            kwargs={"gamma": 1.5},
            desc="3-D, int target",
        ),
        Sample(
            args=(randn(g, 6, 4, scale=2.0), _labels(g, 6, 4)),
            kwargs={"weight": rand(g, 4, low=0.2, high=2.0), "pos_weight": rand(g, 4, high=3.0)},
            desc="per-class weight and pos_weight",
        ),
        Sample(
            args=(randn(g, 3, 5, scale=2.0), _labels(g, 3, 5)),
            kwargs={"weight": rand(g, 3, 1, low=0.2, high=2.0), "gamma": 1.0},
            desc="per-row weight (the kernel takes it)",
        ),
        Sample(
            args=(randn(g, 5, 3), rand(g, 5, 3)),
            kwargs={"pos_weight": rand(g, 5, 1, low=0.5, high=2.0), "gamma": 0.5},
            desc="soft targets, per-row pos_weight",
        ),
        Sample(
            args=(randn(g, 6, 4, scale=2.0), t_ign),
            kwargs={"ignore_index": -1, "weight": rand(g, 6, 1, low=0.5, high=2.0)},
            desc="ignore_index=-1, per-row weight",
        ),
    ]


def _sigmoid_errors() -> list[ErrorCase]:
    x, t = torch.randn(3, 4), torch.rand(3, 4).round()
    w = torch.ones(4)

    def case(kwargs, error, match, args=(x, t), in_constructor=False):
        return ErrorCase(
            args=args, kwargs=kwargs, error=error, match=match, in_constructor=in_constructor
        )

    return [
        case({}, ValueError, r"target size \(3, 2\).*input size \(3, 4\)", (x, t[:, :2])),
        case({}, TypeError, r"input must be a floating.*int64", (x.long(), t)),
        case({}, TypeError, r"target must be a floating or integer.*bool", (x, t > 0.5)),
        case({}, ValueError, r"target should be between 0 and 1, found 2", (x, t * 2)),
        case({}, ValueError, r"target should be between 0 and 1, found -1", (x, t - 1)),
        case({"gamma": -1.0}, ValueError, r"gamma must be .*>= 0, got -1", in_constructor=True),
        case(
            {"gamma": "2"}, TypeError, r"gamma must be a real number, got str", in_constructor=True
        ),
        case({"alpha": 1.5}, ValueError, r"alpha must be in \[0, 1\].*1\.5", in_constructor=True),
        case({"weight": torch.ones(3)}, ValueError, r"weight of shape \(3,\) does not broadcast"),
        case({"pos_weight": torch.ones(2, 3, 4)}, ValueError, r"pos_weight of shape \(2, 3, 4\)"),
        case(
            {"weight": 0.5},
            TypeError,
            r"weight must be a torch.Tensor, got float",
            in_constructor=True,
        ),
        case(
            {"pos_weight": w.long()},
            TypeError,
            r"pos_weight must be a floating-point tensor, got dtype torch.int64",
            in_constructor=True,
        ),
        case({"ignore_index": 1.5}, TypeError, r"ignore_index must be an int", in_constructor=True),
    ]


def _sigmoid_random(g: torch.Generator, n: int, c: int) -> Sample:
    kwargs = {"alpha": float(rand(g, 1)), "gamma": float(rand(g, 1, high=3.0))}
    return Sample(
        args=(randn(g, n, c, scale=3.0), _labels(g, n, c)), kwargs=kwargs, desc=f"random {n}x{c}"
    )


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
    wrong = randn(g, 5, 4, scale=2.0) + 100.0  # confidently wrong rows: the target logit -100
    wrong_t = randint(g, 4, 5)
    wrong[torch.arange(5), wrong_t] = -100.0
    return [
        Sample(args=(randn(g, 6, 4, scale=2.0), t), desc="indices, defaults"),
        Sample(
            args=(randn(g, 6, 4, scale=2.0), t_ign),
            kwargs={"alpha": alpha, "gamma": 0.5},
            desc="alpha + ignored, gamma=0.5",
        ),
        Sample(
            args=(randn(g, 6, 4), t),
            kwargs={"ignore_index": 2, "gamma": 1.0},
            desc="ignore_index in range",
        ),
        Sample(
            args=(randn(g, 6, 4), t_ign),
            kwargs={"alpha": alpha, "gamma": 0.0},
            desc="gamma=0 (= CE)",
        ),
        Sample(
            args=(randn(g, 2, 3, 4, 2), kt),
            kwargs={"alpha": rand(g, 3, low=0.5), "gamma": 3.0},
            desc="K-dim (N,C,d1,d2)",
        ),
        Sample(args=(randn(g, 5), randint(g, 5)), kwargs={"gamma": 1.5}, desc="no batch (C,)"),
        Sample(args=(randn(g, 5, 3, scale=8.0), randint(g, 3, 5)), desc="large logits"),
        Sample(args=(randn(g, 4, 1), torch.zeros(4, dtype=torch.int64)), desc="single class"),
        Sample(args=(wrong, wrong_t), desc="confidently wrong, logits ±100"),
    ]


def _softmax_errors() -> list[ErrorCase]:
    x, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])

    def case(kwargs, error, match, args=(x, t), in_constructor=False):
        return ErrorCase(
            args=args, kwargs=kwargs, error=error, match=match, in_constructor=in_constructor
        )

    return [
        case({}, IndexError, r"Target 3 is out of bounds", (x, torch.tensor([0, 1, 3, 1]))),
        case({}, TypeError, r"target must be an integer tensor.*float64", (x, t.double())),
        case({}, ValueError, r"Expected target size \(4,\).*got \(3,\)", (x, t[:3])),
        case({}, TypeError, r"input must be a floating.*int64", (x.long(), t)),
        case({"alpha": torch.ones(4)}, ValueError, r"alpha must be a 1-D tensor.*\(3\)"),
        case({"alpha": torch.ones(2, 3)}, ValueError, r"alpha must be a 1-D", in_constructor=True),
        case({"alpha": 0.25}, TypeError, r"alpha must be None or a 1-D", in_constructor=True),
        case({"gamma": -0.5}, ValueError, r"gamma must be .*>= 0", in_constructor=True),
        case({"ignore_index": 1.5}, TypeError, r"ignore_index must be an int", in_constructor=True),
    ]


def _softmax_random(g: torch.Generator, n: int, c: int) -> Sample:
    t = with_ignored(randint(g, c, n), g, -100, frac=0.2)
    kwargs = {"gamma": float(rand(g, 1, high=3.0))}
    if bool(randint(g, 2, 1)):
        kwargs["alpha"] = rand(g, c, low=0.1, high=2.0)
    return Sample(args=(randn(g, n, c, scale=3.0), t), kwargs=kwargs, desc=f"random n={n} c={c}")


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
