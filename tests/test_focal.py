"""Focal losses: gamma = 0 against BCE / cross entropy, the torchvision formula, gradients at
saturated logits for every gamma, multi-label, ignore_index and K-dimensional inputs.

torchvision is not a dependency: its ``sigmoid_focal_loss`` formula is written out below.
"""

from __future__ import annotations

import math
import os
import warnings

# Before anything imports triton (it reads this once): the kernel test below runs the Triton
# kernel on CPU tensors through the interpreter, as tests/kernels/conftest.py does.
os.environ.setdefault("TRITON_INTERPRET", "1")

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
    # (losskit.binary_cross_entropy_with_logits now runs torch's native op, which flushes these
    # tails to 0: only the focal path, losskit's own formula, is held to this here.)
    x = torch.tensor([-80.0, -20.0, -16.0, -3.0, 3.0, 16.0, 20.0, 80.0], dtype=dtype)
    for y in (0.0, 1.0):
        t = torch.full_like(x, y)
        xd = x.double()
        expected = (1 - y) * torch.sigmoid(xd) - y * torch.sigmoid(-xd)
        for fn in (
            lambda a, b, **kw: losskit.sigmoid_focal_loss(a, b, alpha=-1.0, gamma=0.0, **kw),
            lambda a, b, **kw: losskit.sigmoid_focal_loss(
                a, b, alpha=-1.0, gamma=0.0, pos_weight=torch.ones((), dtype=dtype), **kw
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


# ---------------------------------------------------------------- softmax focal: exact gradient


def _mp_focal_grad(row: list[float], y: int, gamma: float) -> list[float]:
    """d/dx_c of -(1 - p_y)^gamma log p_y by mpmath's numerical differentiation at 60 digits:
    an oracle independent of any closed form."""
    mpmath = pytest.importorskip("mpmath")
    mp = mpmath.mp
    mp.dps = 60
    xs = [mp.mpf(v) for v in row]

    def loss(values):
        m = max(values)
        log_z = m + mp.log(mp.fsum(mp.exp(v - m) for v in values))
        log_py = values[y] - log_z
        return -((1 - mp.exp(log_py)) ** gamma) * log_py

    grads = []
    for c in range(len(xs)):

        def shifted(h, c=c):
            return loss([v + h if i == c else v for i, v in enumerate(xs)])

        grads.append(float(mp.diff(shifted, 0)))
    return grads


@pytest.mark.parametrize("scale", (100.0, 1e4))
@pytest.mark.parametrize("gamma", (0.5, 2.0))
def test_softmax_focal_float32_gradient_is_exact_on_confidently_wrong_rows(scale, gamma):
    # Confidently wrong rows: the target's logit at -scale, the others near +scale. The old
    # autograd gradient summed p_c / u and -p_c through log_softmax, a rounding that gamma L
    # (up to 2e4) multiplied: relative errors 3e-5 at ±100 and 7e-3 at ±1e4 in float32.
    g = torch.Generator().manual_seed(int(scale))
    x = scale + torch.randn(3, 5, generator=g) * 2
    t = torch.tensor([0, 2, 4])
    x[torch.arange(3), t] = -scale
    x[2, 1] = scale  # a row with a near-tie that decides the gradient's split
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(
        losskit.softmax_focal_loss(leaf, t, gamma=gamma, reduction="sum"), leaf
    )
    expected = torch.tensor([_mp_focal_grad(x[i].tolist(), int(t[i]), gamma) for i in range(3)])
    expected = expected.double()
    # Entries that matter (>= 1e-6 of the row's largest): relative error <= 1e-6, as kornia's
    # and smp's (their ~5e-7 is the rounding of x - max inside log_softmax).
    big = expected.abs() >= 1e-6 * expected.abs().amax(1, keepdim=True)
    rel = (grad.double() - expected).abs()[big] / expected.abs()[big]
    assert rel.max().item() <= 1e-6
    assert ((grad.double() - expected).norm() / expected.norm()).item() <= 1e-6


def test_softmax_focal_gradient_matches_the_float64_reference_at_logits_1e4():
    # More rows, against the closed form of the NumPy reference (its log-space form is finite at
    # ±1e4, where sum(exp(x_c - x_y)) overflows).
    g = torch.Generator().manual_seed(7)
    x = 1e4 + torch.randn(64, 6, generator=g) * 3
    t = torch.randint(0, 6, (64,), generator=g)
    x[torch.arange(64), t] = torch.where(torch.arange(64) % 2 == 0, -1e4, 1e4 + 1.0)
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(
        losskit.softmax_focal_loss(leaf, t, gamma=2.0, reduction="sum"), leaf
    )
    expected = R.softmax_focal_loss_grad(x.double().numpy(), t.numpy(), None, 2.0, reduction="sum")
    big = np.abs(expected) >= 1e-6 * np.abs(expected).max(1, keepdims=True)
    rel = np.abs(grad.double().numpy() - expected)[big] / np.abs(expected)[big]
    assert rel.max() <= 1e-6


def test_focal_losses_second_derivative_and_compile():
    x = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(8)) * 2
    t = torch.tensor([0, 2, 1, -100])
    alpha = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    y = torch.tensor([[1.0, 0.0, -1.0]] * 4, dtype=F64)

    def softmax(a):
        return losskit.softmax_focal_loss(a, t, alpha, gamma=1.5)

    def both(a):  # the sigmoid form with every new option, in the same compile (CI time)
        options = {"weight": alpha, "pos_weight": alpha.flip(0), "ignore_index": -1}
        return softmax(a) + losskit.sigmoid_focal_loss(a, y, 0.25, 2.0, **options)

    assert torch.autograd.gradgradcheck(softmax, (x.clone().requires_grad_(True),))
    torch._dynamo.reset()
    compiled = torch.compile(both, fullgraph=True, backend="aot_eager")
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got, want = compiled(a), both(b)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, a)[0], torch.autograd.grad(want, b)[0])


# ---------------------------------------------------------------- sigmoid focal: new options


def kornia_binary_focal_loss_with_logits(pred, target, alpha, gamma, pos_weight=None, weight=None):
    """kornia.losses.binary_focal_loss_with_logits (kornia 0.7), written out, reduction none."""
    log_probs_pos = TF.logsigmoid(pred)
    log_probs_neg = TF.logsigmoid(-pred)
    pos_term = -log_probs_neg.exp().pow(gamma) * target * log_probs_pos
    neg_term = -log_probs_pos.exp().pow(gamma) * (1.0 - target) * log_probs_neg
    pos_term, neg_term = alpha * pos_term, (1.0 - alpha) * neg_term
    dims = [-1] + [1] * len(pred.shape[2:])
    if pos_weight is not None:
        pos_term = pos_weight.view(dims) * pos_term
    loss = pos_term + neg_term
    if weight is not None:
        loss = weight.view(dims) * loss
    return loss


@pytest.mark.parametrize("gamma", (0.0, 1.0, 2.0))
def test_sigmoid_focal_weight_and_pos_weight_match_kornia_on_hard_labels(gamma):
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 3, 4, generator=g, dtype=F64) * 3  # (N, C, *): kornia's layout
    t = (torch.rand(2, 3, 4, generator=g) < 0.4).to(F64)
    pw = torch.rand(3, generator=g, dtype=F64) * 3
    w = torch.rand(3, generator=g, dtype=F64) + 0.5
    ours = lambda a: losskit.sigmoid_focal_loss(  # noqa: E731
        a, t, 0.3, gamma, "none", weight=w[:, None], pos_weight=pw[:, None]
    )
    theirs = lambda a: kornia_binary_focal_loss_with_logits(a, t, 0.3, gamma, pw, w)  # noqa: E731
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    lo, lt = ours(a), theirs(b)
    _assert_same(lo, lt, rtol=1e-10, atol=1e-13)
    up = torch.rand(lo.shape, dtype=F64, generator=g)
    _assert_same(torch.autograd.grad(lo, a, up)[0], torch.autograd.grad(lt, b, up)[0], 1e-10, 1e-13)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sigmoid_focal_with_gamma_0_and_no_alpha_is_bce_with_weight_and_pos_weight(reduction):
    g = torch.Generator().manual_seed(10)
    x = torch.randn(6, 4, generator=g, dtype=F64) * 3
    t = torch.rand(6, 4, generator=g, dtype=F64)
    w, pw = torch.rand(6, 1, generator=g, dtype=F64), torch.rand(4, generator=g, dtype=F64) * 2
    ours = _value_and_grad(
        losskit.sigmoid_focal_loss, x, t, -1.0, 0.0, reduction, weight=w, pos_weight=pw
    )
    theirs = _value_and_grad(
        TF.binary_cross_entropy_with_logits, x, t, weight=w, pos_weight=pw, reduction=reduction
    )
    _assert_same(ours[0], theirs[0], rtol=1e-12, atol=1e-14)
    _assert_same(ours[1], theirs[1], rtol=1e-12, atol=1e-14)


def test_sigmoid_focal_ignore_index_drops_elements_as_smp_and_has_no_effect_on_them():
    g = torch.Generator().manual_seed(11)
    x = torch.randn(5, 6, generator=g, dtype=F64) * 2
    t = (torch.rand(5, 6, generator=g) < 0.5).to(F64)
    t[0, :2] = t[3, 4] = -1.0
    keep = t != -1
    w = torch.rand(6, generator=g, dtype=F64) + 0.5
    for reduction in ("mean", "sum"):
        ours = losskit.sigmoid_focal_loss(x, t, 0.25, 2.0, reduction, weight=w, ignore_index=-1)
        # smp's FocalLoss filters the ignored elements out, then reduces what is left.
        kept = losskit.sigmoid_focal_loss(
            x[keep], t[keep], 0.25, 2.0, reduction, weight=w.expand(5, 6)[keep]
        )
        _assert_same(ours, kept)
    none = losskit.sigmoid_focal_loss(x, t, ignore_index=-1, reduction="none")
    assert torch.equal(none[~keep], torch.zeros(3, dtype=F64))
    # Changing the logits of ignored elements changes nothing, value or gradient.
    x2 = torch.where(keep, x, torch.full_like(x, 1e4))
    v1 = _value_and_grad(losskit.sigmoid_focal_loss, x, t, ignore_index=-1)
    v2 = _value_and_grad(losskit.sigmoid_focal_loss, x2, t, ignore_index=-1)
    assert torch.equal(v1[0], v2[0]) and torch.equal(v1[1], v2[1])
    assert torch.equal(v1[1][~keep], torch.zeros(3, dtype=F64))
    # All ignored: mean NaN (as cross entropy), sum 0.
    all_ignored = torch.full_like(t, -1.0)
    assert torch.isnan(losskit.sigmoid_focal_loss(x, all_ignored, ignore_index=-1))
    assert losskit.sigmoid_focal_loss(x, all_ignored, ignore_index=-1, reduction="sum") == 0


def test_sigmoid_focal_loss_module_keeps_weights_as_buffers():
    w, pw = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([3.0, 1.0, 1.0])
    crit = losskit.nn.SigmoidFocalLoss(gamma=1.0, weight=w, pos_weight=pw, ignore_index=-1)
    assert {"weight", "pos_weight"} <= set(crit.state_dict())
    crit = crit.double()
    x = torch.randn(4, 3, dtype=F64)
    t = torch.tensor([[1.0, 0.0, -1.0]] * 4, dtype=F64)
    expected = losskit.sigmoid_focal_loss(
        x, t, 0.25, 1.0, weight=w.double(), pos_weight=pw.double(), ignore_index=-1
    )
    _assert_same(crit(x, t), expected)
    assert "ignore_index=-1" in repr(crit)


@pytest.fixture
def interpreted_kernels():
    """Kernels on CPU tensors through Triton's interpreter (as tests/kernels/conftest.py)."""
    triton = pytest.importorskip("triton")
    # Triton reads TRITON_INTERPRET when it is imported (set at the top of this module, and by
    # tests/kernels/conftest.py): skip if it was imported without it.
    knobs = getattr(triton, "knobs", None)
    if knobs is None or not knobs.runtime.interpret:
        pytest.skip("triton was imported without TRITON_INTERPRET=1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the interpreter's masked lanes
        yield


def test_sigmoid_focal_kernel_takes_weight_and_refuses_what_it_lacks(interpreted_kernels):
    g = torch.Generator().manual_seed(12)
    x = torch.randn(6, 5, generator=g) * 3
    y = (torch.rand(6, 5, generator=g) > 0.5).float()
    w = torch.rand(5, generator=g) + 0.5
    for reduction in REDUCTIONS:
        with losskit.use_backend("kernel"):
            kernel = _value_and_grad(
                losskit.sigmoid_focal_loss, x, y, 0.25, 1.5, reduction, weight=w
            )
        with losskit.use_backend("formula"):
            formula = _value_and_grad(
                losskit.sigmoid_focal_loss, x, y, 0.25, 1.5, reduction, weight=w
            )
        _assert_same(kernel[0], formula[0], rtol=1e-5, atol=1e-6)
        _assert_same(kernel[1], formula[1], rtol=1e-5, atol=1e-6)
    refusals = [
        ({"pos_weight": w}, "pos_weight is not supported"),
        ({"ignore_index": -1}, "ignore_index is not supported"),
        ({"weight": w.clone().requires_grad_(True)}, "weight requires a gradient"),
    ]
    with losskit.use_backend("kernel"):
        for kwargs, why in refusals:
            with pytest.raises(losskit.BackendUnsupportedError, match=why):
                losskit.sigmoid_focal_loss(x, y, **kwargs)
        with pytest.raises(losskit.BackendUnsupportedError, match="float64"):
            losskit.sigmoid_focal_loss(x.double(), y.double())
