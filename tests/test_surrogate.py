"""Binary surrogate losses (labels ±1): closed forms, torch equivalents, stability at large
scores, the 0-1 loss as a gradient-free metric, and the bounds the surrogates satisfy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as TF

import losskit

F64 = torch.float64
REDUCTIONS = ("none", "mean", "sum")


def _data(seed: int = 0, shape: tuple[int, ...] = (6, 5), scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(shape, generator=g, dtype=F64) * scale
    y = torch.randint(0, 2, shape, generator=g).to(F64) * 2 - 1
    return f, y


def _value_and_grad(fn, f, *args, **kwargs):
    f = f.detach().clone().requires_grad_(True)
    out = fn(f, *args, **kwargs)
    (g,) = torch.autograd.grad(out.sum(), f)
    return out.detach(), g


@pytest.mark.parametrize(
    ("name", "scalar"),
    [
        ("hinge_loss", lambda m: max(0.0, 1.0 - m)),
        ("squared_hinge_loss", lambda m: max(0.0, 1.0 - m) ** 2),
        ("exponential_loss", lambda m: math.exp(-m)),
        ("logistic_loss", lambda m: math.log1p(math.exp(-m))),
        ("zero_one_loss", lambda m: float(m <= 0)),
    ],
)
def test_each_surrogate_is_its_scalar_formula_of_the_margin(name, scalar):
    f, y = _data()
    out = getattr(losskit, name)(f, y, reduction="none")
    want = [scalar(float(a) * float(b)) for a, b in zip(f.flatten(), y.flatten(), strict=True)]
    torch.testing.assert_close(out.flatten(), torch.tensor(want, dtype=F64), rtol=1e-12, atol=0)
    total = getattr(losskit, name)(f, y, reduction="sum")
    assert math.isclose(float(total), math.fsum(want), rel_tol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_logistic_loss_is_bce_with_logits_of_01_targets(reduction):
    f, y = _data(1)
    ours = _value_and_grad(losskit.logistic_loss, f, y, reduction)
    theirs = _value_and_grad(
        TF.binary_cross_entropy_with_logits, f, (y + 1) / 2, reduction=reduction
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


def _torch_hinge(f, y, margin, reduction):
    return TF.margin_ranking_loss(f, torch.zeros_like(f), y, margin, reduction=reduction)


@pytest.mark.parametrize("margin", (0.0, 0.5, 2.0))
def test_hinge_with_margin_is_margin_ranking_loss_against_zero(margin):
    f, y = _data(2)
    for reduction in REDUCTIONS:
        ours = _value_and_grad(losskit.hinge_loss, f, y, margin, reduction)
        theirs = _value_and_grad(_torch_hinge, f, y, margin, reduction)
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", (F64, torch.float32, torch.float16, torch.bfloat16), ids=str)
def test_logistic_and_hinge_are_finite_at_scores_1e4(dtype):
    f = torch.tensor([1e4, -1e4, 1e4, -1e4], dtype=dtype)
    y = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=dtype)
    out, grad = _value_and_grad(losskit.logistic_loss, f, y, "none")
    assert out.dtype == dtype
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 1e4, 1e4], dtype=dtype))
    # d/df log(1 + exp(-y f)) = -y σ(-y f): 0 where right, -y where confidently wrong.
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, 1.0, -1.0], dtype=dtype))
    torch_value = TF.soft_margin_loss(f.float(), y.float(), reduction="none")
    assert torch.isinf(torch_value[2:]).all()  # what torch gives: inf (and a NaN gradient)
    out, grad = _value_and_grad(losskit.hinge_loss, f, y, 1.0, "none")
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 1e4 + 1, 1e4 + 1], dtype=dtype))
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, 1.0, -1.0], dtype=dtype))


def test_exponential_loss_overflows_to_inf_only_beyond_the_float_range():
    f = torch.tensor([80.0, 100.0], requires_grad=True)
    out = losskit.exponential_loss(f, torch.tensor([-1.0, -1.0]), reduction="none").detach()
    assert math.isclose(float(out[0]), math.exp(80.0), rel_tol=1e-6) and math.isinf(float(out[1]))
    f64 = f.detach().double()
    assert torch.isfinite(losskit.exponential_loss(f64, -torch.ones(2, dtype=F64), "none")).all()


def test_hinge_gradient_at_the_kink_is_zero():
    f = torch.tensor([1.0, -0.5], dtype=F64, requires_grad=True)
    y = torch.tensor([1.0, 1.0], dtype=F64)
    out = losskit.hinge_loss(f, y, margin=1.0, reduction="sum")
    (g,) = torch.autograd.grad(out, f)
    assert g.tolist() == [0.0, -1.0]


def test_zero_one_loss_is_a_metric_without_gradient():
    f = torch.tensor([2.0, -1.0, 0.0, -0.0, float("nan"), 3.0], requires_grad=True)
    y = torch.tensor([1.0, 1.0, 1.0, -1.0, 1.0, -1.0])
    out = losskit.zero_one_loss(f, y, reduction="none")
    assert not out.requires_grad and out.grad_fn is None
    # Ties (score 0, either sign) and NaN scores count as errors.
    assert out.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert math.isclose(float(losskit.zero_one_loss(f, y)), 5 / 6, rel_tol=1e-7)
    assert not losskit.nn.ZeroOneLoss()(f, y).requires_grad


def test_zero_one_mean_is_the_error_rate_of_the_sign_classifier():
    f, y = _data(3, (40,))
    errors = sum(1 for a, b in zip(f.tolist(), y.tolist(), strict=True) if math.copysign(1, a) != b)
    assert math.isclose(float(losskit.zero_one_loss(f, y)), errors / 40, rel_tol=1e-12)


def test_convex_surrogates_upper_bound_the_zero_one_loss():
    f, y = _data(4, (200,), scale=2.0)
    zero_one = losskit.zero_one_loss(f, y, reduction="none")
    assert 0 < zero_one.sum() < 200  # both kinds of points present
    for bound in (
        losskit.hinge_loss(f, y, reduction="none"),
        losskit.squared_hinge_loss(f, y, reduction="none"),
        losskit.exponential_loss(f, y, reduction="none"),
        losskit.logistic_loss(f, y, reduction="none") / math.log(2.0),
    ):
        assert (bound >= zero_one).all()


@pytest.mark.parametrize(
    "name",
    ["hinge_loss", "squared_hinge_loss", "exponential_loss", "logistic_loss", "zero_one_loss"],
)
def test_integer_labels_equal_float_labels_and_bad_labels_raise(name):
    f, y = _data(5)
    fn = getattr(losskit, name)
    torch.testing.assert_close(fn(f, y.long()), fn(f, y), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"target must contain only -1 and 1.*found 0"):
        fn(f, (y + 1) / 2)  # 0/1 labels: a classic mix-up
    losskit.set_checks("shapes")
    try:
        fn(f, (y + 1) / 2)  # value checks off: no device read, no error
    finally:
        losskit.set_checks("all")


def test_modules_validate_margin_when_built():
    with pytest.raises(ValueError, match=r"margin must be a finite number >= 0, got -0\.5"):
        losskit.nn.SquaredHingeLoss(margin=-0.5)
    crit = losskit.nn.HingeLoss(margin=0.5, reduction="sum")
    assert "margin=0.5" in repr(crit)
    f, y = _data(6)
    torch.testing.assert_close(crit(f, y), losskit.hinge_loss(f, y, 0.5, "sum"), rtol=0, atol=0)
