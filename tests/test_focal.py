"""Focal losses: gamma = 0 against BCE / cross entropy, the torchvision formula, gradients at
saturated logits for every gamma, multi-label, ignore_index and K-dimensional inputs.

torchvision is not a dependency: its ``sigmoid_focal_loss`` formula is written out below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import losskit
from losskit import reference as R

F64 = torch.float64
REDUCTIONS = ("none", "mean", "sum")
GAMMAS = (0.0, 0.5, 1.0, 2.0)


def torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """The formula of torchvision.ops.sigmoid_focal_loss (torchvision 0.2x), written out."""
    p = torch.sigmoid(inputs)
    ce_loss = TF.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


def _value_and_grad(fn, x: torch.Tensor, *args, **kwargs):
    x = x.detach().clone().requires_grad_(True)
    out = fn(x, *args, **kwargs)
    up = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (g,) = torch.autograd.grad(out, x, up)
    return out.detach(), g


def _assert_same(a, b, rtol=1e-12, atol=1e-14):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, equal_nan=True)


# ---------------------------------------------------------------- gamma = 0


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sigmoid_focal_with_gamma_0_and_no_alpha_is_bce_with_logits(reduction):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=g, dtype=F64) * 4
    t = torch.rand(7, 5, generator=g, dtype=F64).round()
    ours = _value_and_grad(losskit.sigmoid_focal_loss, x, t, -1.0, 0.0, reduction)
    for bce in (TF.binary_cross_entropy_with_logits, losskit.binary_cross_entropy_with_logits):
        theirs = _value_and_grad(bce, x, t, reduction=reduction)
        _assert_same(ours[0], theirs[0])
        _assert_same(ours[1], theirs[1])


@pytest.mark.parametrize("alpha", (0.0, 0.25, 1.0))
def test_sigmoid_focal_with_gamma_0_is_bce_weighted_by_alpha_t(alpha):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=g, dtype=F64) * 3
    t = torch.rand(6, 3, generator=g, dtype=F64)  # soft targets: alpha_t is linear in t
    alpha_t = alpha * t + (1 - alpha) * (1 - t)
    for reduction in REDUCTIONS:
        ours = _value_and_grad(losskit.sigmoid_focal_loss, x, t, alpha, 0.0, reduction)
        theirs = _value_and_grad(
            TF.binary_cross_entropy_with_logits, x, t, weight=alpha_t, reduction=reduction
        )
        _assert_same(ours[0], theirs[0])
        _assert_same(ours[1], theirs[1])


def _ce_cases():
    g = torch.Generator().manual_seed(2)
    t = torch.randint(0, 4, (8,), generator=g)
    t_ign = t.clone()
    t_ign[[1, 4]] = -100
    kt = torch.randint(0, 3, (2, 3, 2), generator=g)
    kt[0, 1, 1] = 7
    return [
        ("(N, C)", torch.randn(8, 4, generator=g, dtype=F64) * 3, t, {}),
        ("alpha + ignored", torch.randn(8, 4, generator=g, dtype=F64), t_ign, {"w": True}),
        ("K-dim, ignore_index=7", torch.randn(2, 3, 3, 2, generator=g, dtype=F64), kt, {"ii": 7}),
        ("(C,)", torch.randn(5, generator=g, dtype=F64), torch.tensor(3), {}),
    ]


@pytest.mark.parametrize(("desc", "x", "t", "opt"), _ce_cases(), ids=lambda v: str(v)[:20])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_softmax_focal_with_gamma_0_is_cross_entropy(desc, x, t, opt, reduction):
    c = x.shape[0] if x.dim() == 1 else x.shape[1]
    alpha = torch.linspace(0.3, 2.0, c, dtype=F64) if opt.get("w") else None
    ii = opt.get("ii", -100)
    ours = _value_and_grad(losskit.softmax_focal_loss, x, t, alpha, 0.0, ii, reduction)
    for ce in (TF.cross_entropy, losskit.cross_entropy):
        theirs = _value_and_grad(ce, x, t, weight=alpha, ignore_index=ii, reduction=reduction)
        _assert_same(ours[0], theirs[0])
        _assert_same(ours[1], theirs[1])


# ---------------------------------------------------------------- the torchvision formula


@pytest.mark.parametrize("gamma", (0.0, 0.5, 1.0, 2.0, 3.5))
@pytest.mark.parametrize("alpha", (-1.0, 0.25, 0.9))
def test_sigmoid_focal_matches_the_torchvision_formula(alpha, gamma):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 5, generator=g, dtype=F64) * 3  # moderate logits: the formula is fine here
    for t in (
        torch.rand(6, 5, generator=g, dtype=F64).round(),
        torch.rand(6, 5, generator=g, dtype=F64),
    ):
        for reduction in REDUCTIONS:
            ours = _value_and_grad(losskit.sigmoid_focal_loss, x, t, alpha, gamma, reduction)
            theirs = _value_and_grad(torchvision_sigmoid_focal_loss, x, t, alpha, gamma, reduction)
            _assert_same(ours[0], theirs[0], rtol=1e-10, atol=1e-13)
            _assert_same(ours[1], theirs[1], rtol=1e-10, atol=1e-13)


# ---------------------------------------------------------------- saturated logits


@pytest.mark.parametrize("gamma", GAMMAS)
def test_sigmoid_focal_gradient_at_logits_30_matches_the_closed_form(gamma):
    x = torch.tensor([30.0, -30.0, 30.0, -30.0, 0.0, 12.0], dtype=F64)
    t = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.5], dtype=F64)
    value, grad = _value_and_grad(losskit.sigmoid_focal_loss, x, t, 0.25, gamma, "none")
    up = torch.linspace(0.5, 1.5, 6, dtype=F64).numpy()
    expected = R.sigmoid_focal_loss_grad(x.numpy(), t.numpy(), 0.25, gamma, "none", grad_output=up)
    assert torch.isfinite(grad).all()
    # atol: (1 - y) x - log σ(x) and x_y - logsumexp(x) (the forms of BCE and CE, kept so that
    # gamma = 0 equals them exactly) lose ~eps·|x| absolutely where the loss is tiny.
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(
        value.numpy(),
        R.sigmoid_focal_loss(x.numpy(), t.numpy(), 0.25, gamma, "none"),
        rtol=1e-9,
        atol=1e-15,
    )


@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_focal_gradient_at_logits_30_matches_the_closed_form(gamma):
    x = torch.tensor([[30.0, -30.0, 0.0]] * 3 + [[-30.0, 30.0, 29.0]], dtype=F64)
    t = torch.tensor([0, 1, 2, 2])
    alpha = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    value, grad = _value_and_grad(losskit.softmax_focal_loss, x, t, alpha, gamma, -100, "none")
    up = torch.linspace(0.5, 1.5, 4, dtype=F64).numpy()
    expected = R.softmax_focal_loss_grad(
        x.numpy(), t.numpy(), alpha.numpy(), gamma, reduction="none", grad_output=up
    )
    assert torch.isfinite(grad).all()
    # atol: (1 - y) x - log σ(x) and x_y - logsumexp(x) (the forms of BCE and CE, kept so that
    # gamma = 0 equals them exactly) lose ~eps·|x| absolutely where the loss is tiny.
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-9, atol=1e-15)
    ref = R.softmax_focal_loss(x.numpy(), t.numpy(), alpha.numpy(), gamma, reduction="none")
    np.testing.assert_allclose(value.numpy(), ref, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("dtype", (F64, torch.float32), ids=str)
def test_binary_gradients_keep_their_relative_precision_in_the_tails(dtype):
    # d BCE / dx = (1 - y) σ(x) - y σ(-x) is tiny but representable where the loss saturates
    # towards 0; the form (1 - y) x - logsigmoid(x) cancels there (float32: 0 at x = -20).
    x = torch.tensor([-80.0, -20.0, -16.0, -3.0, 3.0, 16.0, 20.0, 80.0], dtype=dtype)
    for y in (0.0, 1.0):
        t = torch.full_like(x, y)
        xd = x.double()
        expected = (1 - y) * torch.sigmoid(xd) - y * torch.sigmoid(-xd)
        for fn in (
            losskit.binary_cross_entropy_with_logits,
            lambda a, b, **kw: losskit.sigmoid_focal_loss(a, b, alpha=-1.0, gamma=0.0, **kw),
            lambda a, b, **kw: losskit.binary_cross_entropy_with_logits(
                a, b, pos_weight=torch.ones((), dtype=dtype), **kw
            ),
        ):
            xg = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(fn(xg, t, reduction="sum"), xg)
            torch.testing.assert_close(g.double(), expected, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("dtype", (F64, torch.float32, torch.float16, torch.bfloat16), ids=str)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_focal_losses_are_finite_at_logits_1e4_in_every_dtype(gamma, dtype):
    x = torch.tensor([[1e4, -1e4], [-1e4, 1e4], [1e4, 1e4]], dtype=dtype)
    t01 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=dtype)
    out, grad = _value_and_grad(losskit.sigmoid_focal_loss, x, t01, 0.25, gamma, "none")
    assert out.dtype == dtype and torch.isfinite(out).all() and torch.isfinite(grad).all()
    # Right: loss and gradient 0. Wrong (third row, first column): loss alpha_t * 1e4 (rounded
    # in low precision) with gradient (1 - alpha) * 1 (its derivative, since p_t = 0).
    rtol = {F64: 1e-12, torch.float32: 1e-6}.get(dtype, 1e-2)
    expected_loss = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.75e4, 0.0]], dtype=F64).to(dtype)
    _assert_same(out, expected_loss, rtol=rtol, atol=0)
    up = torch.linspace(0.5, 1.5, 6, dtype=F64).reshape(
        3, 2
    )  # the upstream gradient of _value_and_grad
    expected_grad = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.75 * up[2, 0], 0.0]]).to(dtype)
    _assert_same(grad, expected_grad, rtol=rtol, atol=0)

    t = torch.tensor([0, 1, 1])
    out, grad = _value_and_grad(losskit.softmax_focal_loss, x, t, None, gamma, -100, "none")
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()
    expected_loss = torch.tensor([0.0, 0.0, math.log(2.0) * 0.5**gamma], dtype=F64).to(dtype)
    _assert_same(out, expected_loss, rtol=rtol, atol=0)


def test_the_textbook_formula_has_nan_gradients_where_ours_is_finite():
    # The regime the log-space factor exists for: gamma < 1 and 1 - p_t rounding to 0.
    x = torch.tensor([40.0, -40.0])
    t = torch.tensor([1.0, 0.0])
    _, textbook = _value_and_grad(torchvision_sigmoid_focal_loss, x, t, 0.25, 0.5, "sum")
    _, ours = _value_and_grad(losskit.sigmoid_focal_loss, x, t, 0.25, 0.5, "sum")
    assert torch.isnan(textbook).all()
    assert torch.isfinite(ours).all() and ours.abs().max() < 1e-15


# ---------------------------------------------------------------- multi-label, ignore, K-dim


def _scalar_sigmoid_focal(x: float, y: float, alpha: float, gamma: float) -> float:
    p = 1.0 / (1.0 + math.exp(-x))
    p_t = p if y == 1.0 else 1.0 - p
    a_t = alpha if y == 1.0 else 1.0 - alpha
    return -a_t * (1.0 - p_t) ** gamma * math.log(p_t)


def test_sigmoid_focal_multi_label_is_independent_per_element():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 6, generator=g, dtype=F64) * 2
    t = (torch.rand(4, 6, generator=g) < 0.4).to(F64)  # several positive labels per row
    out = losskit.sigmoid_focal_loss(x, t, 0.3, 1.5, reduction="none")
    assert out.shape == x.shape
    for i in range(4):
        for j in range(6):
            want = _scalar_sigmoid_focal(float(x[i, j]), float(t[i, j]), 0.3, 1.5)
            assert math.isclose(float(out[i, j]), want, rel_tol=1e-12)
    total = sum(
        _scalar_sigmoid_focal(float(a), float(b), 0.3, 1.5)
        for a, b in zip(x.flatten(), t.flatten(), strict=True)
    )
    assert math.isclose(
        float(losskit.sigmoid_focal_loss(x, t, 0.3, 1.5, "mean")), total / 24, rel_tol=1e-12
    )


@pytest.mark.parametrize("gamma", (0.5, 2.0))
def test_softmax_focal_ignored_positions_are_dropped(gamma):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(9, 4, generator=g, dtype=F64) * 2
    t = torch.randint(0, 4, (9,), generator=g)
    t[[0, 3, 8]] = -1
    alpha = torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=F64)
    keep = t != -1
    for reduction in ("sum", "none"):
        full = losskit.softmax_focal_loss(x, t, alpha, gamma, -1, reduction)
        kept = losskit.softmax_focal_loss(x[keep], t[keep], alpha, gamma, -1, reduction)
        if reduction == "none":
            assert torch.equal(full[~keep], torch.zeros(3, dtype=F64))
            full = full[keep]
        _assert_same(full, kept)
    mean = losskit.softmax_focal_loss(x, t, alpha, gamma, -1, "mean")
    per = losskit.softmax_focal_loss(x[keep], t[keep], alpha, gamma, -1, "none")
    _assert_same(mean, per.sum() / alpha[t[keep]].sum())


def test_softmax_focal_all_ignored_mean_is_nan_with_zero_gradient_and_sum_is_0():
    x = torch.randn(3, 4, dtype=F64, requires_grad=True)
    t = torch.full((3,), -100)
    mean = losskit.softmax_focal_loss(x, t)
    assert torch.isnan(mean)
    (g,) = torch.autograd.grad(mean, x)
    assert torch.equal(g, torch.zeros_like(g))
    assert losskit.softmax_focal_loss(x, t, reduction="sum").item() == 0.0
    assert torch.isnan(
        losskit.softmax_focal_loss(torch.randn(0, 4), torch.zeros(0, dtype=torch.long))
    )


def test_softmax_focal_k_dim_equals_flattened_2d():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=F64)
    t = torch.randint(0, 3, (2, 4, 5), generator=g)
    t[0, 0, :2] = -100
    alpha = torch.tensor([0.2, 1.0, 3.0], dtype=F64)
    flat_x = x.permute(0, 2, 3, 1).reshape(-1, 3)
    for reduction in REDUCTIONS:
        k = losskit.softmax_focal_loss(x, t, alpha, 1.5, reduction=reduction)
        flat = losskit.softmax_focal_loss(flat_x, t.reshape(-1), alpha, 1.5, reduction=reduction)
        _assert_same(k.reshape(-1) if reduction == "none" else k, flat)
    one = losskit.softmax_focal_loss(x[0, :, 1, 2], t[0, 1, 2], alpha, 1.5, reduction="none")
    assert one.shape == ()
    _assert_same(one, losskit.softmax_focal_loss(x, t, alpha, 1.5, reduction="none")[0, 1, 2])


def test_softmax_focal_loss_module_keeps_alpha_as_a_buffer():
    alpha = torch.tensor([1.0, 2.0, 0.5])
    crit = losskit.nn.SoftmaxFocalLoss(alpha=alpha, gamma=1.0)
    assert "alpha" in crit.state_dict()
    crit = crit.double()
    assert crit.alpha.dtype == F64
    x, t = torch.randn(5, 3, dtype=F64), torch.tensor([0, 1, 2, 1, 0])
    _assert_same(crit(x, t), losskit.softmax_focal_loss(x, t, alpha.double(), 1.0))
    assert "gamma=1.0" in repr(crit) and "gamma=2.0" in repr(losskit.nn.SigmoidFocalLoss())
