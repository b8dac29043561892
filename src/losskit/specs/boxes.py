"""Registry entries of the box regression losses (``losskit.boxes``).

Samples are valid random ``(x1, y1, x2, y2)`` boxes: targets jittered from the predictions (mostly
overlapping) and independent pairs (many disjoint), in ``(N, 4)``, ``(B, N, 4)`` and ``(4,)``
shapes. torch has none of these losses; the torchvision formulas are checked in
tests/test_boxes.py, as are degenerate boxes.

CIoU and Wise-IoU detach part of their formula by default (``detach_alpha``,
``detach_enclosing``), so their autograd gradient is deliberately not the derivative of the value;
the samples here turn the detach off, so that the generic gradient tests (finite differences of the
reference, gradcheck) apply. The detached gradients are tested in tests/test_boxes.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .. import boxes as F
from .. import nn as lnn
from .. import reference as R
from .._registry import ErrorCase, LossInfo, Sample, register
from ._make import rand, randn

F64 = torch.float64


def random_boxes(
    g: torch.Generator, *shape: int, scale: float = 10.0, min_size: float = 0.5
) -> torch.Tensor:
    """Valid boxes ``(*shape, 4)``: corners in ``[0, scale]``, sides in ``[min_size, scale / 2]``."""
    xy = rand(g, *shape, 2, high=scale)
    wh = rand(g, *shape, 2, low=min_size, high=scale / 2)
    return torch.cat([xy, xy + wh], dim=-1)


def jittered(g: torch.Generator, boxes: torch.Tensor, shift: float = 0.3) -> torch.Tensor:
    """Boxes near ``boxes``: centres moved by ~``shift`` of the size, sides scaled by ~exp(±shift)."""
    wh = boxes[..., 2:] - boxes[..., :2]
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2 + randn(g, *wh.shape, scale=shift) * wh
    new_wh = wh * torch.exp(randn(g, *wh.shape, scale=shift))
    return torch.cat([centre - new_wh / 2, centre + new_wh / 2], dim=-1)


def _base_samples(g: torch.Generator, kwargs: dict[str, Any]) -> list[Sample]:
    p = random_boxes(g, 6)
    b = random_boxes(g, 2, 3)
    small = random_boxes(g, 4, scale=2.0, min_size=0.05)
    return [
        Sample(args=(p, jittered(g, p, 0.1)), kwargs=dict(kwargs), desc="(N, 4), overlapping"),
        Sample(
            args=(random_boxes(g, 6), random_boxes(g, 6)),
            kwargs=dict(kwargs),
            desc="(N, 4), many disjoint",
        ),
        Sample(args=(b, jittered(g, b, 0.6)), kwargs=dict(kwargs), desc="(B, N, 4)"),
        Sample(args=(random_boxes(g), random_boxes(g)), kwargs=dict(kwargs), desc="one box (4,)"),
        Sample(
            args=(small, jittered(g, small, 0.2)),
            kwargs={**kwargs, "eps": 1e-4},
            desc="small boxes, eps=1e-4",
        ),
    ]


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


def _errors(extra: list[ErrorCase]) -> Callable[[], list[ErrorCase]]:
    def cases() -> list[ErrorCase]:
        p = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]])
        bad_x = torch.tensor([[0.0, 0.0, 2.0, 2.0], [3.0, 1.0, 1.0, 4.0]])
        bad_y = torch.tensor([[0.0, 5.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]])
        return [
            _case((p[:, :3], p[:, :3]), {}, ValueError, r"pred must have shape \(\.\.\., 4\)"),
            _case((p, p[:1]), {}, ValueError, r"target size \(1, 4\).*pred size \(2, 4\)"),
            _case((p.long(), p), {}, TypeError, r"pred must be a floating.*int64"),
            _case((p, p.double()), {}, TypeError, r"pred and target must have the same dtype"),
            _case((bad_x, p), {}, ValueError, r"pred has a box with x2 < x1.*\[3\.0, 1\.0"),
            _case((p, bad_y), {}, ValueError, r"target has a box with x2 < x1 or y2 < y1"),
            _case((p, p), {"eps": 0.0}, ValueError, r"eps must be in \(0, inf\)", True),
            _case((p, p), {"eps": "1e-7"}, TypeError, r"eps must be a real number", True),
            *extra,
        ]

    return cases


def _random(kwargs_fn: Callable[[torch.Generator], dict[str, Any]]):
    def sample(g: torch.Generator, n: int, c: int) -> Sample:
        p = random_boxes(g, n)
        t = jittered(g, p, 0.5) if c % 2 else random_boxes(g, n)
        return Sample(args=(p, t), kwargs=kwargs_fn(g), desc=f"random n={n}")

    return sample


def _register(
    name: str,
    formula: str,
    module: type[torch.nn.Module],
    samples: Callable[[torch.Generator], list[Sample]],
    extra_errors: list[ErrorCase] = (),  # type: ignore[assignment]
    random_kwargs: Callable[[torch.Generator], dict[str, Any]] = lambda g: {},
) -> None:
    register(
        LossInfo(
            name=name,
            family="boxes",
            formula=formula,
            functional=getattr(F, name),
            module=module,
            reference=getattr(R, name),
            samples=samples,
            error_cases=_errors(list(extra_errors)),
            random_sample=_random(random_kwargs),
            grad_args=(0, 1),
        )
    )


_P = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]])

_register(
    "iou_loss",
    "1 - IoU,  IoU = I / (U + eps)",
    lnn.IoULoss,
    lambda g: _base_samples(g, {}),
)
_register(
    "giou_loss",
    "1 - IoU + (C - U) / (C + eps),  C = enclosing area",
    lnn.GIoULoss,
    lambda g: _base_samples(g, {}),
)
_register(
    "diou_loss",
    "1 - IoU + rho^2 / (c^2 + eps)",
    lnn.DIoULoss,
    lambda g: _base_samples(g, {}),
)
_register(
    "ciou_loss",
    "DIoU + alpha v,  v = 4/pi^2 (atan(wg/hg) - atan(w/h))^2",
    lnn.CIoULoss,
    lambda g: _base_samples(g, {"detach_alpha": False}),
    [_case((_P, _P), {"detach_alpha": 1}, TypeError, r"detach_alpha must be a bool", True)],
    lambda g: {"detach_alpha": False},
)
_register(
    "eiou_loss",
    "DIoU + (w - wg)^2 / (Cw^2 + eps) + (h - hg)^2 / (Ch^2 + eps)",
    lnn.EIoULoss,
    lambda g: _base_samples(g, {}),
)


def _focal_eiou_samples(g: torch.Generator) -> list[Sample]:
    p = random_boxes(g, 5)
    return [
        *_base_samples(g, {}),
        Sample(args=(p, jittered(g, p)), kwargs={"gamma": 0.0}, desc="gamma=0 (EIoU)"),
        Sample(args=(p, jittered(g, p)), kwargs={"gamma": 2.0}, desc="gamma=2"),
    ]


_register(
    "focal_eiou_loss",
    "IoU^gamma * EIoU",
    lnn.FocalEIoULoss,
    _focal_eiou_samples,
    [_case((_P, _P), {"gamma": -0.5}, ValueError, r"gamma must be in \[0, inf\)", True)],
    lambda g: {"gamma": float(rand(g, 1, high=3.0))},
)


def _alpha_iou_samples(g: torch.Generator) -> list[Sample]:
    p = random_boxes(g, 5)
    return [
        *_base_samples(g, {}),
        Sample(args=(p, jittered(g, p)), kwargs={"alpha": 0.5}, desc="alpha=0.5"),
        Sample(args=(p, jittered(g, p)), kwargs={"alpha": 1.0}, desc="alpha=1 (IoU loss)"),
    ]


_register(
    "alpha_iou_loss",
    "1 - IoU^alpha",
    lnn.AlphaIoULoss,
    _alpha_iou_samples,
    [_case((_P, _P), {"alpha": 0.0}, ValueError, r"alpha must be in \(0, inf\)", True)],
    lambda g: {"alpha": float(rand(g, 1, low=0.5, high=4.0))},
)


def _siou_samples(g: torch.Generator) -> list[Sample]:
    p = random_boxes(g, 5)
    return [
        *_base_samples(g, {}),
        Sample(args=(p, jittered(g, p)), kwargs={"theta": 2.0}, desc="theta=2"),
        Sample(args=(p, jittered(g, p, 0.05)), kwargs={"theta": 6.0}, desc="theta=6, near targets"),
    ]


_register(
    "siou_loss",
    "1 - IoU + (distance cost(angle) + shape cost) / 2",
    lnn.SIoULoss,
    _siou_samples,
    [_case((_P, _P), {"theta": -1.0}, ValueError, r"theta must be in \(0, inf\)", True)],
    lambda g: {"theta": float(rand(g, 1, low=2.0, high=6.0))},
)
_register(
    "wiou_loss",
    "exp(rho^2 / (Cw^2 + Ch^2 + eps)*) * (1 - IoU)  (Wise-IoU v1)",
    lnn.WIoULoss,
    lambda g: _base_samples(g, {"detach_enclosing": False}),
    [
        _case(
            (_P, _P),
            {"detach_enclosing": None},
            TypeError,
            r"detach_enclosing must be a bool",
            True,
        )
    ],
    lambda g: {"detach_enclosing": False},
)
