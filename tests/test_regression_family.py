"""Regression losses: worked numbers and option interactions the generic suite cannot see.

Oracles: hand-computed closed forms, ``torch.nn.functional``, the NumPy reference and
``math.lgamma`` (for the Stirling term).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import losskit
from losskit import nn as lnn
from losskit import reference as R

F64 = torch.float64
REDUCTIONS = ("none", "mean", "sum")
LOG_2PI = math.log(2 * math.pi)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def _grad(fn, *tensors: torch.Tensor, **kwargs) -> tuple[torch.Tensor, ...]:
    """``fn(*tensors, **kwargs)`` and the gradient of its sum w.r.t. each of ``tensors``."""
    leaves = [x.detach().clone().requires_grad_(True) for x in tensors]
    out = fn(*leaves, **kwargs)
    return (out, *torch.autograd.grad(out.sum(), leaves, allow_unused=True))


# ---------------------------------------------------------------- worked numbers

WORKED = [
    ("l1_loss", (t(1, -2, 0.5), t(0, 0, 0.5)), {}, [1.0, 2.0, 0.0]),
    ("mse_loss", (t(1, -2, 0.5), t(0, 0, 0.5)), {}, [1.0, 4.0, 0.0]),
    ("smooth_l1_loss", (t(0.5, 2, -3), t(0, 0, 0)), {}, [0.125, 1.5, 2.5]),
    ("smooth_l1_loss", (t(0.5, 2, -3), t(0, 0, 0)), {"beta": 0.0}, [0.5, 2.0, 3.0]),
    ("smooth_l1_loss", (t(0.5, 2, -3), t(0, 0, 0)), {"beta": 4.0}, [0.03125, 0.5, 1.125]),
    ("huber_loss", (t(1, 3, -0.5), t(0, 0, 0)), {"delta": 2.0}, [0.5, 4.0, 0.125]),
    ("poisson_nll_loss", (t(0, math.log(2)), t(1, 3)), {}, [1.0, 2 - 3 * math.log(2)]),
    (
        "poisson_nll_loss",
        (t(2.0, 0.5), t(2, 0)),
        {"log_input": False, "eps": 0.0},
        [2 - 2 * math.log(2), 0.5],
    ),
    (
        "poisson_nll_loss",
        (t(0, 0, 0), t(0, 1, 2)),
        {"full": True},
        [1.0, 1.0, 1 + 2 * math.log(2) - 2 + 0.5 * math.log(4 * math.pi)],
    ),
    (
        "gaussian_nll_loss",
        (t(1, 0), t(0, 0), t(2, 0.5)),
        {},
        [0.5 * (math.log(2) + 0.5), 0.5 * math.log(0.5)],
    ),
    (
        "gaussian_nll_loss",
        (t(1, 0), t(0, 0), t(2, 0.5)),
        {"full": True},
        [0.5 * (math.log(2) + 0.5 + LOG_2PI), 0.5 * (math.log(0.5) + LOG_2PI)],
    ),
]


@pytest.mark.parametrize(("name", "args", "kwargs", "expected"), WORKED)
def test_worked_numbers(name, args, kwargs, expected):
    ours = getattr(losskit, name)(*args, **kwargs, reduction="none")
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-12, atol=1e-12)
    ref = getattr(R, name)(*(a.numpy() for a in args), **kwargs, reduction="none")
    np.testing.assert_allclose(ref, expected, rtol=1e-12, atol=1e-12)
    theirs = getattr(TF, name)(*args, **kwargs, reduction="mean")
    np.testing.assert_allclose(
        getattr(losskit, name)(*args, **kwargs).item(), theirs.item(), rtol=1e-12
    )
    assert theirs.item() == pytest.approx(float(np.mean(expected)), rel=1e-12)


# ---------------------------------------------------------------- Huber and smooth L1


@pytest.mark.parametrize("delta", [0.1, 0.5, 1.0, 2.5])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_huber_is_delta_times_smooth_l1_against_torch(delta, reduction):
    g = torch.Generator().manual_seed(int(delta * 10))
    x = torch.randn(5, 4, generator=g, dtype=F64) * 2
    y = torch.randn(5, 4, generator=g, dtype=F64)
    ours_huber = losskit.huber_loss(x, y, reduction, delta)
    ours_smooth = losskit.smooth_l1_loss(x, y, reduction, beta=delta)
    torch_huber = TF.huber_loss(x, y, reduction=reduction, delta=delta)
    torch_smooth = TF.smooth_l1_loss(x, y, reduction=reduction, beta=delta)
    torch.testing.assert_close(ours_huber, delta * torch_smooth, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(delta * ours_smooth, torch_huber, rtol=1e-12, atol=1e-12)


def test_smooth_l1_with_beta_zero_is_l1_in_value_and_gradient():
    x, y = t(0.0, 1.5, -2.0, 0.0), t(0.0, 0.0, 0.0, 1.0)
    out_s, gx_s, gy_s = _grad(lambda a, b: losskit.smooth_l1_loss(a, b, "sum", 0.0), x, y)
    out_l, gx_l, gy_l = _grad(lambda a, b: TF.l1_loss(a, b, reduction="sum"), x, y)
    torch.testing.assert_close(out_s, out_l)
    torch.testing.assert_close(gx_s, gx_l)
    torch.testing.assert_close(gy_s, gy_l)
    assert gx_s[0].item() == 0.0  # at a zero residual: 0, not NaN from the quadratic branch


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("l1_loss", {}),
        ("mse_loss", {}),
        ("smooth_l1_loss", {"beta": 0.5}),
        ("smooth_l1_loss", {"beta": 0.0}),
        ("huber_loss", {"delta": 0.5}),
        ("huber_loss", {"delta": 0.5, "weight": t(1, 2, 3, 4, 5)}),
    ],
)
def test_gradient_at_zero_residual_and_at_the_kink_matches_torch(name, kwargs):
    # Residuals 0 (subgradient 0 in torch), exactly 0.5 (the kink of beta/delta = 0.5), ±2.
    x, y = t(0.0, 0.5, -0.5, 2.0, -2.0), t(0.0, 0.0, 0.0, 0.0, 0.0)
    ours = _grad(lambda a, b: getattr(losskit, name)(a, b, reduction="sum", **kwargs), x, y)
    theirs = _grad(lambda a, b: getattr(TF, name)(a, b, reduction="sum", **kwargs), x, y)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    assert ours[1][0].item() == 0.0


@pytest.mark.parametrize(("name", "param"), [("huber_loss", "delta"), ("smooth_l1_loss", "beta")])
def test_infinite_threshold_is_the_quadratic_branch_with_a_finite_gradient(name, param):
    x, y = t(0.5, -2.0, 0.0), t(0.0, 0.0, 0.0)
    kwargs = {param: math.inf, "reduction": "sum"}
    ours = _grad(getattr(losskit, name), x, y, **kwargs)
    theirs = _grad(getattr(TF, name), x, y, **kwargs)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    assert all(torch.isfinite(g).all() for g in ours)


# ---------------------------------------------------------------- weights


def test_weighted_mean_divides_by_summed_weight_for_l1_mse_and_by_count_for_huber():
    x, y = t(1.0, -2.0, 3.0, 0.5), t(0.0, 0.0, 0.0, 0.0)
    w = t(1.0, 0.0, 3.0, 0.5)
    l1, l2 = np.abs(x.numpy()), x.numpy() ** 2
    hub = np.where(l1 < 1.0, 0.5 * l2, l1 - 0.5)
    wn = w.numpy()
    expected = {
        "l1_loss": (wn * l1).sum() / wn.sum(),
        "mse_loss": (wn * l2).sum() / wn.sum(),
        "huber_loss": (wn * hub).mean(),
    }
    for name, value in expected.items():
        ours = getattr(losskit, name)(x, y, weight=w)
        theirs = getattr(TF, name)(x, y, weight=w)
        assert ours.item() == pytest.approx(value, rel=1e-12), name
        assert theirs.item() == pytest.approx(value, rel=1e-12), name
        # sum and none do not normalise
        torch.testing.assert_close(
            getattr(losskit, name)(x, y, reduction="sum", weight=w),
            getattr(TF, name)(x, y, reduction="sum", weight=w),
        )


def test_module_weight_is_a_buffer_and_a_forward_weight_replaces_it():
    w = t(1.0, 2.0, 0.5)
    x, y = t(1.0, -1.0, 2.0), t(0.0, 0.0, 0.0)
    for cls, fn in ((lnn.L1Loss, losskit.l1_loss), (lnn.MSELoss, losskit.mse_loss)):
        crit = cls(weight=w)
        assert set(crit.state_dict()) == {"weight"}
        assert crit.to(torch.float32).weight.dtype == torch.float32
        crit = cls(weight=w)
        assert crit(x, y).item() == pytest.approx(fn(x, y, weight=w).item())
        other = t(0.0, 1.0, 1.0)
        assert crit(x, y, other).item() == pytest.approx(fn(x, y, weight=other).item())
        assert cls()(x, y).item() == pytest.approx(fn(x, y).item())
    crit = lnn.HuberLoss(delta=0.5, weight=w)
    expected = TF.huber_loss(x, y, delta=0.5, weight=w)
    assert crit(x, y).item() == pytest.approx(expected.item())


# ---------------------------------------------------------------- Poisson


def test_poisson_full_adds_the_stirling_term_for_targets_above_one():
    y = t(0.0, 0.5, 1.0, 1.5, 2.0, 10.0, 50.0)
    x = torch.zeros_like(y)
    for log_input, rate in ((True, x), (False, x + 1.0)):
        full = losskit.poisson_nll_loss(rate, y, log_input, True, reduction="none")
        part = losskit.poisson_nll_loss(rate, y, log_input, False, reduction="none")
        yn = y.numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            stirling = np.where(yn > 1, yn * np.log(yn) - yn + 0.5 * np.log(2 * np.pi * yn), 0.0)
        np.testing.assert_allclose((full - part).numpy(), stirling, rtol=1e-12, atol=1e-12)
        ref = R.poisson_nll_loss(rate.numpy(), yn, log_input, True, reduction="none")
        np.testing.assert_allclose(full.numpy(), ref, rtol=1e-12, atol=1e-12)
        theirs = TF.poisson_nll_loss(rate, y, log_input, True, reduction="none")
        np.testing.assert_allclose(full.numpy(), theirs.numpy(), rtol=1e-12, atol=1e-12)
    # Stirling's formula approximates log(y!) to within 1/(12 y).
    for k in (10.0, 50.0):
        term = float(R.poisson_nll_loss(np.zeros(1), np.array([k]), True, True, reduction="sum"))
        term -= 1.0  # exp(0) - k * 0
        assert abs(term - math.lgamma(k + 1)) < 1.0 / (12 * k)


def test_poisson_target_gradient_is_finite_where_torch_gives_nan():
    x = t(0.3, -0.2, 0.1, 0.7)
    y = t(0.0, 0.5, 2.0, 3.5)
    _, gx, gy = _grad(lambda a, b: losskit.poisson_nll_loss(a, b, full=True, reduction="sum"), x, y)
    _, tgx, tgy = _grad(lambda a, b: TF.poisson_nll_loss(a, b, full=True, reduction="sum"), x, y)
    torch.testing.assert_close(gx, tgx)
    assert torch.isnan(tgy[0])  # torch: 0 * log(0) under a masked_fill
    # Ours: d/dy of -y x (+ Stirling where y > 1) = -x + [log y + 1 / (2 y)].
    yn, xn = y.numpy(), x.numpy()
    expected = -xn + np.where(yn > 1, np.log(np.maximum(yn, 1)) + 0.5 / np.maximum(yn, 1), 0.0)
    np.testing.assert_allclose(gy.numpy(), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gy[1:], tgy[1:])


def test_poisson_integer_counts_equal_float_counts():
    x = torch.randn(6, dtype=F64)
    counts = torch.tensor([0, 1, 2, 3, 7, 12])
    for full in (False, True):
        ours = losskit.poisson_nll_loss(x, counts, full=full)
        assert ours.item() == pytest.approx(
            losskit.poisson_nll_loss(x, counts.double(), full=full).item()
        )
        assert ours.item() == pytest.approx(TF.poisson_nll_loss(x, counts, full=full).item())


# ---------------------------------------------------------------- Gaussian


VAR_SHAPES = [
    ((4, 3), (4, 3)),  # heteroscedastic
    ((4, 3), (4,)),  # input shape minus the last dimension
    ((4, 3), (4, 1)),
    ((4, 3), (1, 3)),
    ((2, 3, 4, 4), (2, 1, 4, 4)),
    ((2, 3, 4, 4), (2, 3, 4)),
    ((2, 3, 4, 4), (2, 3, 4, 1)),
    ((5,), ()),
    ((5,), (1,)),
    ((5,), (5,)),
]


@pytest.mark.parametrize(("in_shape", "var_shape"), VAR_SHAPES)
def test_gaussian_homoscedastic_var_shapes_match_torch(in_shape, var_shape):
    g = torch.Generator().manual_seed(len(in_shape) * 10 + len(var_shape))
    x = torch.randn(in_shape, generator=g, dtype=F64)
    y = torch.randn(in_shape, generator=g, dtype=F64)
    v = torch.rand(var_shape, generator=g, dtype=F64) + 0.2
    for reduction in REDUCTIONS:
        ours = _grad(losskit.gaussian_nll_loss, x, y, v, reduction=reduction)
        theirs = _grad(TF.gaussian_nll_loss, x, y, v, reduction=reduction)
        assert ours[0].shape == (in_shape if reduction == "none" else ())
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("var", [0.7, 2, 0.0])
def test_gaussian_number_var_matches_torch_float_var(var):
    x, y = torch.randn(3, 2, dtype=F64), torch.randn(3, 2, dtype=F64)
    for full in (False, True):
        kwargs = {"target": y, "full": full, "reduction": "sum"}
        ours = _grad(losskit.gaussian_nll_loss, x, var=var, **kwargs)
        theirs = _grad(TF.gaussian_nll_loss, x, var=float(var), **kwargs)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        ref = R.gaussian_nll_loss(x.numpy(), y.numpy(), var, full=full, reduction="sum")
        assert ours[0].item() == pytest.approx(float(ref), rel=1e-12)


@pytest.mark.parametrize("var_shape", [(3,), (1, 1), (4, 2), (3, 2, 1), (2, 3)])
def test_gaussian_var_of_another_shape_raises_like_torch(var_shape):
    x, y, v = torch.randn(4, 3), torch.randn(4, 3), torch.ones(var_shape)
    with pytest.raises(ValueError, match="var is of incorrect size"):
        TF.gaussian_nll_loss(x, y, v)
    shape = re.escape(str(tuple(var_shape)))
    with pytest.raises(
        ValueError, match=rf"var is of incorrect size: got shape {shape} .*\(4, 3\)"
    ):
        losskit.gaussian_nll_loss(x, y, v)


def test_gaussian_clamp_keeps_the_variance_gradient_like_torch():
    eps = 1e-3
    x, y = t(1.0, 0.5, -1.0, 2.0), t(0.0, 0.0, 0.0, 0.0)
    v = t(0.0, 1e-9, 5e-4, 0.5)
    ours = _grad(lambda a, c: losskit.gaussian_nll_loss(a, y, c, eps=eps, reduction="sum"), x, v)
    theirs = _grad(lambda a, c: TF.gaussian_nll_loss(a, y, c, eps=eps, reduction="sum"), x, v)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    # Closed form at the clamped variance vc: value 0.5 (log vc + d^2 / vc),
    # d/dvar = 0.5 (1/vc - d^2/vc^2) (not 0: the clamp does not block the gradient).
    vc = np.maximum(v.numpy(), eps)
    d2 = x.numpy() ** 2
    assert ours[0].item() == pytest.approx(float(np.sum(0.5 * (np.log(vc) + d2 / vc))), rel=1e-12)
    np.testing.assert_allclose(ours[2].numpy(), 0.5 * (1 / vc - d2 / vc**2), rtol=1e-12)
    assert (ours[2].numpy()[:3] != 0).all()


def test_gaussian_negative_var_raises_like_torch_and_the_value_check_can_be_skipped():
    x, y = torch.randn(2, 2), torch.randn(2, 2)
    neg = torch.tensor([[1.0, -0.25], [1.0, 1.0]])
    for var in (neg, -2.0):
        with pytest.raises(ValueError, match="var has negative entry/entries"):
            TF.gaussian_nll_loss(x, y, var)
        with pytest.raises(
            ValueError, match=r"negative entry/entries: (found -0\.25|got var=-2\.0)"
        ):
            losskit.gaussian_nll_loss(x, y, var)
    try:
        losskit.set_checks("shapes")
        # Not read: the clamp turns the negative entry into eps, as torch's clamp would.
        out = losskit.gaussian_nll_loss(x, y, neg, eps=0.1)
        expected = losskit.gaussian_nll_loss(x, y, neg.clamp(min=0.1), eps=0.1)
        assert out.item() == pytest.approx(expected.item())
        with pytest.raises(ValueError, match="negative"):  # a number is always checked
            losskit.gaussian_nll_loss(x, y, -1.0)
    finally:
        losskit.set_checks("all")


# ---------------------------------------------------------------- bad inputs


def test_shape_mismatch_raises_where_torch_warns_and_broadcasts():
    x, y = torch.randn(3, 1), torch.randn(3)
    with pytest.warns(UserWarning, match="different to the input size"):
        TF.mse_loss(x, y)
    for name in ("l1_loss", "mse_loss", "smooth_l1_loss", "huber_loss", "poisson_nll_loss"):
        with pytest.raises(ValueError, match=r"target size \(3,\).*input size \(3, 1\)"):
            getattr(losskit, name)(x, y)
    with pytest.raises(ValueError, match=r"target size \(3,\)"):
        losskit.gaussian_nll_loss(x, y, torch.ones(3, 1))


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: lnn.SmoothL1Loss(beta=-0.5), ValueError, r"beta must be in \[0, inf\), got -0\.5"),
        (lambda: lnn.HuberLoss(delta=0), ValueError, r"delta must be in \(0, inf\), got 0"),
        (lambda: lnn.HuberLoss(delta=float("nan")), ValueError, r"delta must not be NaN"),
        (lambda: lnn.PoissonNLLLoss(eps=-1.0), ValueError, r"eps must be in \[0, inf\), got -1\.0"),
        (lambda: lnn.PoissonNLLLoss(log_input="no"), TypeError, r"log_input must be a bool"),
        (lambda: lnn.GaussianNLLLoss(eps=-1e-6), ValueError, r"eps must be in \[0, inf\)"),
        (lambda: lnn.GaussianNLLLoss(full=None), TypeError, r"full must be a bool, got NoneType"),
        (lambda: lnn.L1Loss(reduction="batchmean"), ValueError, r"'batchmean' is not a valid"),
        (
            lambda: lnn.MSELoss(weight=torch.ones(2, dtype=torch.int64)),
            TypeError,
            r"weight must be a floating",
        ),
    ],
)
def test_constructors_reject_bad_hyper_parameters_with_the_value(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_bad_weight_and_var_messages_name_the_shapes():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"weight of shape \(3,\) for input of shape \(2, 3\)"):
        losskit.mse_loss(x, x, weight=torch.ones(3))
    with pytest.raises(ValueError, match=r"weight of shape \(1, 3\)"):
        losskit.huber_loss(x, x, weight=torch.ones(1, 3))
    with pytest.raises(
        TypeError, match=r"var must be a floating-point tensor, got dtype torch.int64"
    ):
        losskit.gaussian_nll_loss(x, x, torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"var must be a real number, got bool"):
        losskit.gaussian_nll_loss(x, x, True)
