"""Registry entries of the detection losses (``losskit.detection``).

Positional sample arguments follow the functional and the Module's ``forward``:
``(input, target, weight, avg_factor)``; the samples leave ``avg_factor`` out (it cannot be
combined with ``"sum"``, and the suite runs every reduction), tests/test_detection.py checks it.
Targets are constants (the quality and distance targets carry no gradient); balanced L1
differentiates both of its tensors. The pairwise box matrices of
:mod:`losskit.boxes` are not losses and are tested in tests/test_boxes.py against a brute-force
loop instead.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import detection as F
from .. import nn as lnn
from .. import reference as R
from .._registry import ErrorCase, LossInfo, Sample, register
from ._make import rand, randint, randn

F64 = torch.float64


def _case(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[Exception],
    match: str,
    in_constructor: bool = False,
) -> ErrorCase:
    return ErrorCase(
        args=args, kwargs=kwargs, error=error, match=match, in_constructor=in_constructor
    )


def _avg_factor_errors(x: torch.Tensor, t: Any) -> list[ErrorCase]:
    return [
        _case((x, t, None, 0.0), {}, ValueError, r"avg_factor must be in \(0, inf\), got 0\.0"),
        _case((x, t, None, 2.0), {"reduction": "sum"}, ValueError, r"avg_factor can not be used"),
        _case(
            (x, t, None, torch.ones(2)),
            {},
            ValueError,
            r"avg_factor must be a number > 0 or a 0-D real tensor.*\(2,\)",
        ),
    ]


# ---------------------------------------------------------------- quality focal loss


def _qfl_pairs(g: torch.Generator, c: int, *shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    labels = randint(g, c + 1, *shape)  # c = background
    labels.view(-1)[0] = 0  # at least one positive
    return labels, rand(g, *shape, low=0.05)


def _qfl_samples(g: torch.Generator) -> list[Sample]:
    dense = rand(g, 5, 4) * (rand(g, 5, 4) < 0.3)
    return [
        Sample(args=(randn(g, 6, 3, scale=2.0), _qfl_pairs(g, 3, 6)), desc="(labels, scores)"),
        Sample(
            args=(randn(g, 6, 3, scale=2.0), _qfl_pairs(g, 3, 6), rand(g, 6, low=0.2)),
            desc="weight per anchor",
        ),
        Sample(args=(randn(g, 5, 4), dense), kwargs={"beta": 1.5}, desc="dense target, beta=1.5"),
        Sample(
            args=(randn(g, 2, 3, 4), _qfl_pairs(g, 4, 2, 3)),
            kwargs={"beta": 0.5},
            desc="(B, N, C), beta=0.5",
        ),
    ]


def _qfl_errors() -> list[ErrorCase]:
    x = torch.randn(4, 3)
    labels, scores = torch.tensor([0, 3, 1, 2]), torch.tensor([0.5, 0.0, 0.9, 0.7])
    t = (labels, scores)
    return [
        _case((x, (labels,)), {}, TypeError, r"target must be a floating tensor.*pair.*length 1"),
        _case((x, (labels.float(), scores)), {}, TypeError, r"labels must be an integer tensor"),
        _case((x, (labels, scores.long())), {}, TypeError, r"scores must be a floating-point"),
        _case((x, (labels[:3], scores)), {}, ValueError, r"labels must have shape \(4,\).*\(3,\)"),
        _case(
            (x, (torch.tensor([0, 4, 1, 2]), scores)), {}, IndexError, r"labels must be.*found 4"
        ),
        _case((x, (labels, scores * 2)), {}, ValueError, r"scores should be between 0 and 1"),
        _case((x, torch.rand(4, 2)), {}, ValueError, r"target size \(4, 2\).*input size \(4, 3\)"),
        _case((x, t, torch.ones(3)), {}, ValueError, r"weight of shape \(3,\) does not broadcast"),
        _case((x, t), {"beta": -1.0}, ValueError, r"beta must be in \[0, inf\)", True),
        *_avg_factor_errors(x, t),
    ]


def _qfl_random(g: torch.Generator, n: int, c: int) -> Sample:
    return Sample(
        args=(randn(g, n, c, scale=3.0), _qfl_pairs(g, c, n)),
        kwargs={"beta": float(rand(g, 1, low=0.5, high=3.0))},
        desc=f"random {n}x{c}",
    )


register(
    LossInfo(
        name="quality_focal_loss",
        family="detection",
        formula="sum_c |y_c - sigmoid(x_c)|^beta BCE(x_c, y_c)  (GFL)",
        functional=F.quality_focal_loss,
        module=lnn.QualityFocalLoss,
        reference=R.quality_focal_loss,
        samples=_qfl_samples,
        error_cases=_qfl_errors,
        random_sample=_qfl_random,
    )
)


# ---------------------------------------------------------------- distribution focal loss


def _dfl_samples(g: torch.Generator) -> list[Sample]:
    t = rand(g, 8, high=4.0)
    t[0], t[1], t[2] = 0.0, 2.0, 4.0  # integer targets, the last bin included
    return [
        Sample(args=(randn(g, 8, 5, scale=2.0), t), desc="bins 0..4, integer targets"),
        Sample(
            args=(randn(g, 8, 5), rand(g, 8, high=4.0), rand(g, 8, low=0.2)),
            desc="weight per edge",
        ),
        Sample(args=(randn(g, 2, 4, 6), rand(g, 2, 4, high=5.0)), desc="(B, 4 edges, 6 bins)"),
        Sample(args=(randn(g, 6, 2), rand(g, 6)), desc="two bins"),
    ]


def _dfl_errors() -> list[ErrorCase]:
    x, t = torch.randn(4, 5), torch.tensor([0.5, 1.0, 3.9, 4.0])
    return [
        _case((x, t[:3]), {}, ValueError, r"target must have shape \(4,\).*got \(3,\)"),
        _case((x, t.long()), {}, TypeError, r"target must be a floating-point tensor"),
        _case((x[:, :1], t), {}, ValueError, r"at least 2 bins, got \(4, 1\)"),
        _case((x, t + 0.5), {}, ValueError, r"target should be between 0 and 4, found 4\.4"),
        _case((x, -t), {}, ValueError, r"target should be between 0 and 4, found -0\.5"),
        _case((x, t, torch.ones(4, 1)), {}, ValueError, r"weight of shape \(4, 1\) does not"),
        *_avg_factor_errors(x, t),
    ]


def _dfl_random(g: torch.Generator, n: int, c: int) -> Sample:
    bins = max(c, 2)
    return Sample(
        args=(randn(g, n, bins, scale=2.0), rand(g, n, high=bins - 1.0)), desc=f"random {n}x{bins}"
    )


register(
    LossInfo(
        name="distribution_focal_loss",
        family="detection",
        formula="-(r - t) log p_l - (t - l) log p_r,  l = floor(t), r = l + 1  (GFL)",
        functional=F.distribution_focal_loss,
        module=lnn.DistributionFocalLoss,
        reference=R.distribution_focal_loss,
        samples=_dfl_samples,
        error_cases=_dfl_errors,
        random_sample=_dfl_random,
    )
)


# ---------------------------------------------------------------- varifocal loss


def _iou_targets(g: torch.Generator, *shape: int) -> torch.Tensor:
    return rand(g, *shape, low=0.1) * (rand(g, *shape) < 0.3)


def _vfl_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(randn(g, 6, 4, scale=2.0), _iou_targets(g, 6, 4)), desc="defaults"),
        Sample(
            args=(randn(g, 6, 4, scale=2.0), _iou_targets(g, 6, 4)),
            kwargs={"iou_weighted": False, "alpha": 0.25, "gamma": 0.5},
            desc="not IoU-weighted, gamma=0.5",
        ),
        Sample(
            args=(randn(g, 5, 3), _iou_targets(g, 5, 3), rand(g, 5, 1, low=0.2)),
            desc="weight per anchor",
        ),
        Sample(args=(randn(g, 7), _iou_targets(g, 7)), kwargs={"gamma": 0.0}, desc="1-D, gamma=0"),
    ]


def _vfl_errors() -> list[ErrorCase]:
    x, t = torch.randn(4, 3), torch.rand(4, 3)
    return [
        _case((x, t[:, :2]), {}, ValueError, r"target size \(4, 2\).*input size \(4, 3\)"),
        _case((x, t > 0.5), {}, TypeError, r"target must be a floating-point tensor"),
        _case((x, t + 1.0), {}, ValueError, r"target should be between 0 and 1"),
        _case((x, t), {"alpha": -0.5}, ValueError, r"alpha must be in \[0, inf\)", True),
        _case((x, t), {"gamma": float("inf")}, ValueError, r"gamma must be a finite number", True),
        _case((x, t), {"iou_weighted": 1}, TypeError, r"iou_weighted must be a bool", True),
        _case((x, t, torch.ones(2, 3)), {}, ValueError, r"weight of shape \(2, 3\)"),
        *_avg_factor_errors(x, t),
    ]


def _vfl_random(g: torch.Generator, n: int, c: int) -> Sample:
    return Sample(
        args=(randn(g, n, c, scale=3.0), _iou_targets(g, n, c)),
        kwargs={"gamma": float(rand(g, 1, high=3.0)), "alpha": float(rand(g, 1))},
        desc=f"random {n}x{c}",
    )


register(
    LossInfo(
        name="varifocal_loss",
        family="detection",
        formula="q BCE(x, q) if q > 0 else alpha sigmoid(x)^gamma BCE(x, 0)",
        functional=F.varifocal_loss,
        module=lnn.VarifocalLoss,
        reference=R.varifocal_loss,
        samples=_vfl_samples,
        error_cases=_vfl_errors,
        random_sample=_vfl_random,
    )
)


# ---------------------------------------------------------------- balanced L1 loss


def _bl1_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(randn(g, 6, 4), randn(g, 6, 4)), desc="(N, 4), inliers and outliers"),
        Sample(
            args=(randn(g, 6, 4), randn(g, 6, 4)),
            kwargs={"alpha": 1.0, "gamma": 2.0, "beta": 0.5},
            desc="alpha=1, gamma=2, beta=0.5",
        ),
        Sample(
            args=(randn(g, 5, 4, scale=0.3), randn(g, 5, 4, scale=0.3), rand(g, 5, 1)),
            desc="small deltas, weight per box",
        ),
        Sample(args=(randn(g, 3, 2, 4, scale=2.0), randn(g, 3, 2, 4)), desc="3-D"),
    ]


def _bl1_errors() -> list[ErrorCase]:
    x, t = torch.randn(4, 4), torch.randn(4, 4)
    return [
        _case((x, t[:2]), {}, ValueError, r"target size \(2, 4\).*input size \(4, 4\)"),
        _case((x, t.double()), {}, TypeError, r"input and target must have the same dtype"),
        _case((x.long(), t), {}, TypeError, r"input must be a floating-point tensor"),
        _case((x, t), {"alpha": 0.0}, ValueError, r"alpha must be in \(0, inf\)", True),
        _case((x, t), {"gamma": -1.0}, ValueError, r"gamma must be in \(0, inf\)", True),
        _case((x, t), {"beta": 0.0}, ValueError, r"beta must be in \(0, inf\)", True),
        _case((x, t, torch.ones(5)), {}, ValueError, r"weight of shape \(5,\) does not broadcast"),
        *_avg_factor_errors(x, t),
    ]


def _bl1_random(g: torch.Generator, n: int, c: int) -> Sample:
    return Sample(
        args=(randn(g, n, c, scale=2.0), randn(g, n, c)),
        kwargs={"beta": float(rand(g, 1, low=0.3, high=2.0))},
        desc=f"random {n}x{c}",
    )


register(
    LossInfo(
        name="balanced_l1_loss",
        family="detection",
        formula="alpha/b (b d + 1) ln(b d / beta + 1) - alpha d if d < beta else gamma d + C",
        functional=F.balanced_l1_loss,
        module=lnn.BalancedL1Loss,
        reference=R.balanced_l1_loss,
        samples=_bl1_samples,
        error_cases=_bl1_errors,
        random_sample=_bl1_random,
        grad_args=(0, 1),
    )
)
