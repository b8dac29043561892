"""Registry entries of the regression losses.

Samples keep residuals away from the kinks (``|x - y|`` of 0 and ``beta``/``delta``) and
variances above ``eps``, where finite differences of the reference are not the gradient; the
kinks and the clamp are edge samples, compared with torch (values and gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as TF

from .. import nn as lnn
from .. import reference as R
from .. import regression as F
from .._registry import ErrorCase, LossInfo, Sample, register
from ._make import F64, positive, rand, randint, randn

_TENSOR_ARGS = (0, 1)  # input and target are both differentiable (as in torch)


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def _pair_errors(**kwargs) -> list[ErrorCase]:
    """Shape and dtype errors shared by every (input, target) loss."""
    x = torch.randn(3, 2)
    return [
        ErrorCase(
            args=(x, torch.randn(3, 1)),
            kwargs=kwargs,
            error=ValueError,
            match=r"target size \(3, 1\).*input size",
        ),
        ErrorCase(
            args=(x, torch.randn(2)),
            kwargs=kwargs,
            error=ValueError,
            match=r"target size \(2,\).*\(3, 2\)",
        ),
        ErrorCase(
            args=(x.long(), x),
            kwargs=kwargs,
            error=TypeError,
            match=r"input must be a floating.*int64",
        ),
        ErrorCase(
            args=(x, x.int()),
            kwargs=kwargs,
            error=TypeError,
            match=r"target must be a floating.*int32",
        ),
        ErrorCase(
            args=(x.tolist(), x),
            kwargs=kwargs,
            error=TypeError,
            match=r"input must be a torch.Tensor, got list",
        ),
    ]


def _weight_errors(**kwargs) -> list[ErrorCase]:
    x = torch.randn(3, 2)
    return [
        ErrorCase(
            args=(x, x),
            kwargs={**kwargs, "weight": torch.ones(2)},
            error=ValueError,
            match=r"Weights and input must have the same size.*weight of shape \(2,\).*\(3, 2\)",
        ),
        ErrorCase(
            args=(x, x),
            kwargs={**kwargs, "weight": torch.ones(3, 2, dtype=torch.long)},
            error=TypeError,
            match="weight",
        ),
    ]


# ---------------------------------------------------------------- L1 / MSE


def _l1_mse_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(randn(g, 4, 3), randn(g, 4, 3)), desc="(N, D)"),
        Sample(args=(randn(g, 2, 3, 4), randn(g, 2, 3, 4)), desc="3-D"),
        Sample(
            args=(randn(g, 5, 2), randn(g, 5, 2)), kwargs={"weight": rand(g, 5, 2)}, desc="weight"
        ),
        Sample(
            args=(randn(g, 6), randn(g, 6)),
            kwargs={"weight": _t(0.0, 1.0, 2.0, 0.0, 0.5, 3.0)},
            desc="weight with zeros",
        ),
        Sample(args=(randn(g, 1).reshape(()), randn(g, 1).reshape(())), desc="0-D"),
    ]


def _l1_mse_edges(g: torch.Generator, big: float) -> list[Sample]:
    x = randn(g, 3, 2)
    return [
        Sample(args=(randn(g, 0, 3), randn(g, 0, 3)), desc="empty"),
        Sample(
            args=(randn(g, 0, 3), randn(g, 0, 3)),
            kwargs={"weight": rand(g, 0, 3)},
            desc="empty weighted",
        ),
        Sample(args=(x, x.clone()), desc="zero residual (gradient 0)"),
        Sample(args=(_t(big, -big, 0.5, 0.0), _t(0.0, 0.0, -big, 1.0)), desc=f"residuals ±{big:g}"),
    ]


def _l1_mse_random(g: torch.Generator, n: int, c: int) -> Sample:
    kwargs = {"weight": rand(g, n, c)} if bool(randint(g, 2, 1)) else {}
    scale = float(rand(g, 1, low=0.1, high=10.0))
    return Sample(
        args=(randn(g, n, c, scale=scale), randn(g, n, c)), kwargs=kwargs, desc=f"random {n}x{c}"
    )


register(
    LossInfo(
        name="l1_loss",
        family="regression",
        formula="w |x - y|  (weighted mean: sum(w l) / sum(w))",
        functional=F.l1_loss,
        module=lnn.L1Loss,
        reference=R.l1_loss,
        torch_functional=TF.l1_loss,
        samples=_l1_mse_samples,
        error_cases=lambda: _pair_errors() + _weight_errors(),
        edge_samples=lambda g: _l1_mse_edges(g, 1e4),
        random_sample=_l1_mse_random,
        grad_args=_TENSOR_ARGS,
    )
)

register(
    LossInfo(
        name="mse_loss",
        family="regression",
        formula="w (x - y)^2  (weighted mean: sum(w l) / sum(w))",
        functional=F.mse_loss,
        module=lnn.MSELoss,
        reference=R.mse_loss,
        torch_functional=TF.mse_loss,
        samples=_l1_mse_samples,
        error_cases=lambda: _pair_errors() + _weight_errors(),
        # ±100: the squared residuals (1e4) and their sum stay finite in float16.
        edge_samples=lambda g: _l1_mse_edges(g, 100.0),
        random_sample=_l1_mse_random,
        grad_args=_TENSOR_ARGS,
    )
)

# ---------------------------------------------------------------- smooth L1 / Huber


def _smooth_l1_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(randn(g, 4, 3, scale=2.0), randn(g, 4, 3)), desc="beta=1 (default)"),
        Sample(args=(randn(g, 4, 3), randn(g, 4, 3)), kwargs={"beta": 0.5}, desc="beta=0.5"),
        Sample(
            args=(randn(g, 2, 3, 2, scale=3.0), randn(g, 2, 3, 2)),
            kwargs={"beta": 2.5},
            desc="beta=2.5",
        ),
        Sample(args=(randn(g, 7), randn(g, 7)), kwargs={"beta": 0.0}, desc="beta=0 (L1)"),
        Sample(
            args=(randn(g, 1).reshape(()), randn(g, 1).reshape(())),
            kwargs={"beta": 0.3},
            desc="0-D",
        ),
    ]


def _kink_edges(g: torch.Generator, name: str) -> list[Sample]:
    """Residuals exactly 0 and exactly at the threshold 0.5, and ±1e4."""
    x = _t(0.5, -0.5, 0.0, 1.0, 1e4, -1e4)
    y = _t(0.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    return [
        Sample(args=(randn(g, 0, 2), randn(g, 0, 2)), desc="empty"),
        Sample(args=(x, y), kwargs={name: 0.5}, desc=f"|x - y| = {name}, 0 and 1e4"),
    ]


def _smooth_l1_errors() -> list[ErrorCase]:
    x = torch.randn(3, 2)
    return [
        *_pair_errors(),
        ErrorCase(
            args=(x, x),
            kwargs={"beta": -1.0},
            error=ValueError,
            match=r"beta must be in \[0, inf\), got -1\.0",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, x),
            kwargs={"beta": float("nan")},
            error=ValueError,
            match=r"beta must not be NaN",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, x),
            kwargs={"beta": "1"},
            error=TypeError,
            match=r"beta must be a real number, got str",
            desc="",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="smooth_l1_loss",
        family="regression",
        formula="0.5 d^2 / beta if d < beta else d - 0.5 beta,  d = |x - y|",
        functional=F.smooth_l1_loss,
        module=lnn.SmoothL1Loss,
        reference=R.smooth_l1_loss,
        torch_functional=TF.smooth_l1_loss,
        samples=_smooth_l1_samples,
        error_cases=_smooth_l1_errors,
        edge_samples=lambda g: [
            *_kink_edges(g, "beta"),
            Sample(
                args=(_t(0.0, 1.0, -2.0), _t(0.0, 0.0, 0.0)),
                kwargs={"beta": 0.0},
                desc="beta=0 at 0",
            ),
        ],
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, c, scale=2.0), randn(g, n, c)),
            kwargs={"beta": float(rand(g, 1, high=3.0))},
        ),
        grad_args=_TENSOR_ARGS,
    )
)


def _huber_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(randn(g, 4, 3, scale=2.0), randn(g, 4, 3)), desc="delta=1 (default)"),
        Sample(args=(randn(g, 4, 3), randn(g, 4, 3)), kwargs={"delta": 0.3}, desc="delta=0.3"),
        Sample(
            args=(randn(g, 2, 3, 2, scale=3.0), randn(g, 2, 3, 2)),
            kwargs={"delta": 2.0, "weight": rand(g, 2, 3, 2)},
            desc="delta=2 + weight",
        ),
        Sample(
            args=(randn(g, 6), randn(g, 6)), kwargs={"weight": rand(g, 6, high=2.0)}, desc="weight"
        ),
        Sample(
            args=(randn(g, 1).reshape(()), randn(g, 1).reshape(())),
            kwargs={"delta": 0.7},
            desc="0-D",
        ),
    ]


def _huber_errors() -> list[ErrorCase]:
    x = torch.randn(3, 2)
    return [
        *_pair_errors(),
        *_weight_errors(),
        ErrorCase(
            args=(x, x),
            kwargs={"delta": 0.0},
            error=ValueError,
            match=r"delta must be in \(0, inf\), got 0\.0",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, x),
            kwargs={"delta": -1},
            error=ValueError,
            match=r"delta must be in \(0, inf\), got -1",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, x),
            kwargs={"delta": True},
            error=TypeError,
            match=r"delta must be a real number, got bool",
            desc="",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="huber_loss",
        family="regression",
        formula="w (0.5 d^2 if d < delta else delta (d - 0.5 delta)),  d = |x - y|",
        functional=F.huber_loss,
        module=lnn.HuberLoss,
        reference=R.huber_loss,
        torch_functional=TF.huber_loss,
        samples=_huber_samples,
        error_cases=_huber_errors,
        edge_samples=lambda g: [
            *_kink_edges(g, "delta"),
            Sample(
                args=(randn(g, 0, 2), randn(g, 0, 2)),
                kwargs={"weight": rand(g, 0, 2)},
                desc="empty weighted",
            ),
        ],
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, c, scale=2.0), randn(g, n, c)),
            kwargs={"delta": float(rand(g, 1, low=0.05, high=3.0)), "weight": rand(g, n, c)},
        ),
        grad_args=_TENSOR_ARGS,
    )
)

# ---------------------------------------------------------------- Poisson NLL


def _counts(g: torch.Generator, *shape: int, high: int = 6) -> torch.Tensor:
    return randint(g, high, *shape).to(F64)


def _poisson_samples(g: torch.Generator) -> list[Sample]:
    rate = positive(g, 4, 3, low=0.1, high=4.0)
    return [
        Sample(args=(randn(g, 4, 3), _counts(g, 4, 3)), desc="log_input (default)"),
        Sample(args=(rate, _counts(g, 4, 3)), kwargs={"log_input": False}, desc="rate input"),
        Sample(
            args=(randn(g, 2, 3, 2), _counts(g, 2, 3, 2)),
            kwargs={"full": True},
            desc="full (Stirling)",
        ),
        Sample(
            args=(rate.clone(), rand(g, 4, 3, high=5.0)),
            kwargs={"log_input": False, "full": True, "eps": 0.1},
            desc="rate + full + eps=0.1, real targets",
        ),
        Sample(args=(randn(g, 5), randint(g, 4, 5)), kwargs={"full": True}, desc="integer counts"),
    ]


def _poisson_errors() -> list[ErrorCase]:
    x = torch.randn(3, 2)
    t = torch.rand(3, 2)
    return [
        ErrorCase(
            args=(x, t[:, :1]),
            kwargs={},
            error=ValueError,
            match=r"target size \(3, 1\).*input size \(3, 2\)",
        ),
        ErrorCase(
            args=(x.long(), t), kwargs={}, error=TypeError, match=r"input must be a floating.*int64"
        ),
        ErrorCase(
            args=(x, t > 0.5),
            kwargs={},
            error=TypeError,
            match=r"target must be a floating or integer.*bool",
        ),
        ErrorCase(
            args=(x, t),
            kwargs={"log_input": 1},
            error=TypeError,
            match=r"log_input must be a bool, got int",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, t),
            kwargs={"full": "yes"},
            error=TypeError,
            match=r"full must be a bool, got str",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, t),
            kwargs={"eps": -1e-8},
            error=ValueError,
            match=r"eps must be in \[0, inf\), got -1e-08",
            desc="",
            in_constructor=True,
        ),
    ]


def _poisson_edges(g: torch.Generator) -> list[Sample]:
    # Losses stay below float16's maximum (65504), so torch is finite in every dtype.
    return [
        Sample(args=(randn(g, 0, 3), _counts(g, 0, 3)), desc="empty"),
        Sample(
            args=(_t(-1e4, 10.0, -30.0, 0.0), _t(2.0, 0.0, 5.0, 1.0)),
            kwargs={"full": True},
            desc="log-rates -1e4 .. 10",
        ),
        Sample(
            args=(_t(1e-3, 1e4, 0.5), _t(3.0, 1.0, 0.0)),
            kwargs={"log_input": False, "full": True},
            desc="rates 1e-3 .. 1e4",
        ),
    ]


register(
    LossInfo(
        name="poisson_nll_loss",
        family="regression",
        formula="exp(x) - y x  (or x - y log(x + eps)) [+ y log y - y + 0.5 log(2 pi y), y > 1]",
        functional=F.poisson_nll_loss,
        module=lnn.PoissonNLLLoss,
        reference=R.poisson_nll_loss,
        torch_functional=TF.poisson_nll_loss,
        samples=_poisson_samples,
        error_cases=_poisson_errors,
        edge_samples=_poisson_edges,
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, c), _counts(g, n, c, high=8)),
            kwargs={"full": bool(randint(g, 2, 1)), "log_input": True},
        ),
        # The target is observed counts; its gradient (finite here, NaN in torch at 0 with
        # full=True) is tested in tests/test_regression_family.py.
        grad_args=(0,),
    )
)

# ---------------------------------------------------------------- Gaussian NLL


def _gaussian_samples(g: torch.Generator) -> list[Sample]:
    def mt(*shape: int) -> tuple[torch.Tensor, torch.Tensor]:
        return randn(g, *shape), randn(g, *shape)

    return [
        Sample(args=(*mt(4, 3), positive(g, 4, 3)), desc="heteroscedastic var (N, D)"),
        Sample(args=(*mt(4, 3), positive(g, 4)), desc="var (N,): input shape minus last dim"),
        Sample(args=(*mt(4, 3), positive(g, 4, 1)), kwargs={"full": True}, desc="var (N, 1), full"),
        Sample(args=(*mt(4, 3), positive(g, 1, 3)), desc="var (1, D)"),
        Sample(args=(*mt(2, 3, 2, 2), positive(g, 2, 1, 2, 2)), desc="var (N, 1, H, W)"),
        Sample(args=(*mt(5), positive(g, 1).reshape(())), desc="1-D input, 0-D var"),
        Sample(
            args=(*mt(3, 2), positive(g, 3, 2, low=0.3)),
            kwargs={"eps": 0.1, "full": True},
            desc="eps=0.1 (clamp inactive)",
        ),
    ]


def _gaussian_errors() -> list[ErrorCase]:
    x, t = torch.randn(3, 2), torch.randn(3, 2)
    v = torch.rand(3, 2) + 0.1
    neg = v.clone()
    neg[1, 0] = -0.5
    return [
        ErrorCase(
            args=(x, t, neg),
            kwargs={},
            error=ValueError,
            match=r"var has negative entry/entries: found -0\.5",
        ),
        ErrorCase(
            args=(x, t, -1.0),
            kwargs={},
            error=ValueError,
            match=r"var has negative entry/entries: got var=-1\.0",
        ),
        ErrorCase(
            args=(x, t, torch.ones(2)),
            kwargs={},
            error=ValueError,
            match=r"var is of incorrect size.*\(2,\).*\(3, 2\)",
        ),
        ErrorCase(
            args=(x, t, torch.ones(1, 1)),
            kwargs={},
            error=ValueError,
            match=r"var is of incorrect size.*\(1, 1\)",
        ),
        ErrorCase(
            args=(x, t, torch.ones(3, 2, dtype=torch.long)),
            kwargs={},
            error=TypeError,
            match=r"var must be a floating.*int64",
        ),
        ErrorCase(
            args=(x, t, "1"),
            kwargs={},
            error=TypeError,
            match=r"var must be a real number, got str",
        ),
        ErrorCase(
            args=(x, t[:2], v),
            kwargs={},
            error=ValueError,
            match=r"target size \(2, 2\).*input size \(3, 2\)",
        ),
        ErrorCase(
            args=(x.long(), t, v),
            kwargs={},
            error=TypeError,
            match=r"input must be a floating.*int64",
        ),
        ErrorCase(
            args=(x, t, v),
            kwargs={"eps": -1.0},
            error=ValueError,
            match=r"eps must be in \[0, inf\), got -1\.0",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, t, v),
            kwargs={"full": 1},
            error=TypeError,
            match=r"full must be a bool, got int",
            desc="",
            in_constructor=True,
        ),
    ]


def _gaussian_edges(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(randn(g, 0, 3), randn(g, 0, 3), positive(g, 0, 3)), desc="empty"),
        Sample(args=(randn(g, 0, 3), randn(g, 0, 3), positive(g, 0)), desc="empty, var (N,)"),
        Sample(
            args=(randn(g, 2, 3), randn(g, 2, 3), _t(0.0, 0.01, 0.1, 0.5, 1e-8, 2.0).reshape(2, 3)),
            kwargs={"eps": 0.1},
            desc="var below eps (clamped, gradient straight through)",
        ),
        Sample(
            args=(_t(100.0, -100.0, 0.0), _t(0.0, 0.0, 100.0), _t(1.0, 4.0, 1e3)),
            desc="residuals ±100",
        ),
    ]


register(
    LossInfo(
        name="gaussian_nll_loss",
        family="regression",
        formula="0.5 (log max(var, eps) + (x - y)^2 / max(var, eps)) [+ 0.5 log 2 pi]",
        functional=F.gaussian_nll_loss,
        module=lnn.GaussianNLLLoss,
        reference=R.gaussian_nll_loss,
        torch_functional=TF.gaussian_nll_loss,
        samples=_gaussian_samples,
        error_cases=_gaussian_errors,
        edge_samples=_gaussian_edges,
        random_sample=lambda g, n, c: Sample(
            args=(
                randn(g, n, c),
                randn(g, n, c),
                positive(g, n, 1 if bool(randint(g, 2, 1)) else c),
            ),
            kwargs={"full": bool(randint(g, 2, 1))},
        ),
        # input, target and var; a float var (no gradient) is covered by the family tests.
        grad_args=(0, 1, 2),
    )
)
