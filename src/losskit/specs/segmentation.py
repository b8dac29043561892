"""Registry entries of the segmentation losses (``losskit.segmentation``).

Samples are small ``(N, C, H, W)`` logits (a few pixels, so the reference's loops and the finite
differences stay cheap) with index targets (some ignored), one-hot/soft probability targets,
``include_background=False``, class weights and ``batch_dice``; each loss's own options (squared
Dice, Tversky's α/β, Lovász's classes, ...) get a sample each. torch has none of these losses:
values and gradients are checked against the NumPy references. Peers (MONAI, smp) are compared
in tests/test_segmentation_peers.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .. import nn as lnn
from .. import reference as R
from .. import segmentation as S
from .._registry import ErrorCase, LossInfo, Sample, register
from ._make import probs, rand, randint, randn, with_ignored

F64 = torch.float64


def _index_target(g: torch.Generator, c: int, *shape: int, ignore: int | None = None):
    t = randint(g, c, *shape)
    if ignore is not None:
        t = with_ignored(t, g, ignore, frac=0.25)
        t.view(-1)[0] = 1  # at least one kept pixel
    return t


def _one_hot(g: torch.Generator, c: int, *shape: int) -> torch.Tensor:
    y = randint(g, c, *shape)
    return torch.nn.functional.one_hot(y, c).movedim(-1, 1).to(F64)


def _common_samples(g: torch.Generator, extra: dict[str, Any], *, probs_ok: bool = True):
    """The contract's cases, each with the loss's own ``extra`` keyword arguments."""
    w = rand(g, 3, low=0.5, high=2.0)
    samples = [
        Sample(
            args=(randn(g, 2, 3, 2, 2, scale=2.0), _index_target(g, 3, 2, 2, 2)),
            kwargs=dict(extra),
            desc="indices, defaults",
        ),
        Sample(
            args=(randn(g, 2, 3, 2, 2, scale=2.0), _index_target(g, 3, 2, 2, 2, ignore=255)),
            kwargs={**extra, "ignore_index": 255, "include_background": False, "weight": w},
            desc="ignored pixels, no background, weights",
        ),
    ]
    if probs_ok:
        samples.append(
            Sample(
                args=(randn(g, 2, 3, 2, 2), _one_hot(g, 3, 2, 2, 2)),
                kwargs={**extra, "activation": "sigmoid", "batch_dice": True},
                desc="one-hot target, sigmoid, batch_dice",
            )
        )
    return samples


def _soft_3d(g: torch.Generator) -> Sample:
    return Sample(
        args=(randn(g, 1, 3, 2, 2, 2), probs(g, 1, 3, 2, 2, 2)),
        kwargs={"include_background": False},
        desc="soft target, 3-D",
    )


def _binary_sample(extra: dict[str, Any]) -> Callable[[torch.Generator], Sample]:
    def make(g: torch.Generator) -> Sample:
        return Sample(
            args=(randn(g, 2, 1, 2, 3, scale=2.0), _index_target(g, 2, 2, 2, 3)),
            kwargs={**extra, "activation": "sigmoid"},
            desc="binary, one channel, sigmoid",
        )

    return make


def _errors(extra_errors: Callable[[], list[ErrorCase]] = list, *, activation: bool = True):
    def make() -> list[ErrorCase]:
        x, t = torch.randn(2, 3, 4, 4), torch.randint(3, (2, 4, 4))
        cases = [
            ErrorCase(
                args=(x, t[:, :3]),
                kwargs={},
                error=ValueError,
                match=r"Expected target size \(2, 4, 4\).*got \(2, 3, 4\)",
            ),
            ErrorCase(
                args=(x.long(), t), kwargs={}, error=TypeError, match=r"input must be a floating"
            ),
            ErrorCase(
                args=(x, torch.full((2, 4, 4), 3)),
                kwargs={},
                error=IndexError,
                match=r"Target 3 is out of bounds",
            ),
            ErrorCase(
                args=(x[:, :, 0, 0], t[:, 0, 0]),
                kwargs={},
                error=ValueError,
                match=r"at least one spatial dimension",
            ),
            ErrorCase(
                args=(x, t),
                kwargs={"weight": torch.ones(2)},
                error=ValueError,
                match=r"weight must have one entry per input channel \(3",
            ),
            ErrorCase(
                args=(x, t),
                kwargs={"weight": -torch.ones(3)},
                error=ValueError,
                match=r"weight should be between 0 and inf",
            ),
            ErrorCase(
                args=(x, torch.rand(2, 3, 4, 4)),
                kwargs={"ignore_index": 0},
                error=ValueError,
                match=r"ignore_index applies to class-index targets",
            ),
            ErrorCase(
                args=(x, torch.rand(2, 3, 4, 4) * 2),
                kwargs={},
                error=ValueError,
                match=r"target should be between 0 and 1",
            ),
            ErrorCase(
                args=(x, t),
                kwargs={"include_background": 0},
                error=TypeError,
                match=r"include_background must be a bool, got int",
                in_constructor=True,
            ),
            ErrorCase(
                args=(x, t),
                kwargs={"ignore_index": 1.5},
                error=TypeError,
                match=r"ignore_index must be an int",
                in_constructor=True,
            ),
            ErrorCase(
                args=(x, t),
                kwargs={"batch_dice": "yes"},
                error=TypeError,
                match=r"batch_dice must be a bool",
                in_constructor=True,
            ),
        ]
        if activation:
            cases += [
                ErrorCase(
                    args=(x, t),
                    kwargs={"activation": "relu"},
                    error=ValueError,
                    match=r"activation must be",
                    in_constructor=True,
                ),
                ErrorCase(
                    args=(x[:, :1], t.clamp(max=1)),
                    kwargs={},
                    error=ValueError,
                    match=r"activation='softmax' over a single channel",
                ),
            ]
        return cases + extra_errors()

    return make


def _smooth_errors() -> list[ErrorCase]:
    x, t = torch.randn(2, 3, 4, 4), torch.randint(3, (2, 4, 4))
    return [
        ErrorCase(
            args=(x, t),
            kwargs={"smooth": -1.0},
            error=ValueError,
            match=r"smooth must be in \[0, inf\), got -1",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, t),
            kwargs={"eps": float("nan")},
            error=ValueError,
            match=r"eps must not be NaN",
            in_constructor=True,
        ),
    ]


def _register(
    name: str,
    formula: str,
    module: type[torch.nn.Module],
    own: list[dict[str, Any]],
    *,
    errors: Callable[[], list[ErrorCase]],
    reductions: tuple[str, ...] = ("none", "mean", "sum"),
    binary: dict[str, Any] | None = None,
    probs_ok: bool = True,
    soft: bool = False,
) -> None:
    def samples(g: torch.Generator) -> list[Sample]:
        out = _common_samples(g, own[0], probs_ok=probs_ok)
        for extra in own[1:]:
            out.append(
                Sample(
                    args=(randn(g, 2, 3, 2, 2, scale=2.0), _index_target(g, 3, 2, 2, 2, ignore=1)),
                    kwargs={"ignore_index": 1, **extra},
                    desc=", ".join(f"{k}={v}" for k, v in extra.items()) + ", ignore a class",
                )
            )
        if soft:
            out.append(_soft_3d(g))
        if binary is not None:
            out.append(_binary_sample(binary)(g))
        return out

    register(
        LossInfo(
            name=name,
            family="segmentation",
            formula=formula,
            functional=getattr(S, name),
            module=module,
            reference=getattr(R, name),
            samples=samples,
            error_cases=errors,
            reductions=reductions,
        )
    )


_register(
    "dice_loss",
    "1 - (2 sum p t + s) / max(sum p + sum t + s, eps), mean over classes",
    lnn.DiceLoss,
    [{}, {"squared_pred": True, "smooth": 0.0, "eps": 1e-3, "batch_dice": True}],
    errors=_errors(_smooth_errors),
    binary={},
    soft=True,
)
_register(
    "jaccard_loss",
    "1 - (I + s) / max(P + T - I + s, eps), mean over classes",
    lnn.JaccardLoss,
    [{}, {"smooth": 1.0}],
    errors=_errors(_smooth_errors),
    soft=True,
)
_register(
    "tversky_loss",
    "1 - (TP + s) / max(TP + alpha FP + beta FN + s, eps)",
    lnn.TverskyLoss,
    [{"alpha": 0.3, "beta": 0.7}, {"alpha": 1.0, "beta": 0.2, "smooth": 0.5, "batch_dice": True}],
    errors=_errors(_smooth_errors),
)
_register(
    "focal_tversky_loss",
    "(1 - TverskyIndex)^gamma per class",
    lnn.FocalTverskyLoss,
    [{}, {"gamma": 2.0, "alpha": 0.5, "beta": 0.5}],
    errors=_errors(_smooth_errors),
)
_register(
    "generalized_dice_loss",
    "1 - (2 sum_c w_c I_c + s) / (sum_c w_c (P_c + T_c) + s),  w_c = 1 / T_c^2",
    lnn.GeneralizedDiceLoss,
    [{}, {"smooth": 1.0, "batch_dice": True}],
    errors=_errors(_smooth_errors),
)
_register(
    "lovasz_softmax_loss",
    "sum_k e_(k) (J_k - J_(k-1)), errors |t - p| sorted, Jaccard's Lovász extension",
    lnn.LovaszSoftmaxLoss,
    [{}, {"classes": "all", "batch_dice": True}],
    errors=_errors(),
)
_register(
    "dice_ce_loss",
    "lambda_dice Dice + lambda_ce CE (same contract)",
    lnn.DiceCELoss,
    [
        {},
        {
            "lambda_dice": 0.5,
            "lambda_ce": 2.0,
            "squared_pred": True,
            "ce_include_background": False,
            "include_background": False,
        },
    ],
    errors=_errors(_smooth_errors),
    reductions=("mean", "sum"),
    binary={},
)
_register(
    "dice_focal_loss",
    "lambda_dice Dice + lambda_focal Focal (same contract)",
    lnn.DiceFocalLoss,
    [{"gamma": 1.5}, {"gamma": 0.5, "lambda_focal": 2.0, "focal_include_background": False}],
    errors=_errors(_smooth_errors),
    reductions=("mean", "sum"),
    binary={"alpha": 0.25},
    probs_ok=False,
)


# ---------------------------------------------------------------- Lovász hinge


def _hinge_samples(g: torch.Generator) -> list[Sample]:
    w = rand(g, 3, low=0.5, high=2.0)
    multi = (rand(g, 2, 3, 2, 3) > 0.5).to(F64)
    return [
        Sample(
            args=(randn(g, 2, 1, 2, 3, scale=2.0), _index_target(g, 2, 2, 2, 3)),
            desc="binary (N, 1, H, W), index target",
        ),
        Sample(
            args=(randn(g, 2, 1, 3, 2), _index_target(g, 2, 2, 3, 2, ignore=255)),
            kwargs={"ignore_index": 255, "batch_dice": True},
            desc="binary, ignored pixels, batch",
        ),
        Sample(
            args=(randn(g, 2, 3, 2, 3, scale=2.0), multi),
            kwargs={"weight": w, "include_background": False},
            desc="multi-label 0/1 target, weights, no background",
        ),
        Sample(
            args=(randn(g, 2, 3, 2, 2), _index_target(g, 3, 2, 2, 2)),
            desc="class indices, one-hot over channels",
        ),
    ]


register(
    LossInfo(
        name="lovasz_hinge_loss",
        family="segmentation",
        formula="sum_k relu(1 - x s)_(k) (J_k - J_(k-1)), per channel",
        functional=S.lovasz_hinge_loss,
        module=lnn.LovaszHingeLoss,
        reference=R.lovasz_hinge_loss,
        samples=_hinge_samples,
        error_cases=_errors(activation=False),
    )
)

# ---------------------------------------------------------------- boundary


def _boundary_samples(g: torch.Generator) -> list[Sample]:
    w = rand(g, 3, low=0.5, high=2.0)
    return [
        Sample(args=(randn(g, 2, 3, 2, 2), randn(g, 2, 3, 2, 2, scale=2.0)), desc="defaults"),
        Sample(
            args=(randn(g, 2, 3, 2, 3), randn(g, 2, 3, 2, 3)),
            kwargs={"include_background": False, "weight": w, "batch_dice": True},
            desc="no background, weights, batch",
        ),
        Sample(
            args=(randn(g, 2, 2, 3, 2), randn(g, 2, 2, 3, 2)),
            kwargs={"activation": "sigmoid"},
            desc="sigmoid",
        ),
    ]


def _boundary_errors() -> list[ErrorCase]:
    x, d = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    return [
        ErrorCase(
            args=(x, d[:, :2]), kwargs={}, error=ValueError, match=r"distance size \(2, 2, 4, 4\)"
        ),
        ErrorCase(
            args=(x, torch.randint(3, (2, 4, 4))),
            kwargs={},
            error=TypeError,
            match=r"distance must be a floating tensor",
        ),
        ErrorCase(
            args=(x, d),
            kwargs={"activation": "tanh"},
            error=ValueError,
            match=r"activation must be",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="boundary_loss",
        family="segmentation",
        formula="mean_q phi(q) p(q), phi the signed distance to the target boundary",
        functional=S.boundary_loss,
        module=lnn.BoundaryLoss,
        reference=R.boundary_loss,
        samples=_boundary_samples,
        error_cases=_boundary_errors,
    )
)
