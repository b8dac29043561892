"""BCE-with-logits and sigmoid focal, whose gradient is computed in closed form in the forward.

The oracle is the formula evaluated in 150-digit decimal arithmetic, its derivative a central
difference there: no shared code and no float rounding. Second-order gradients (``create_graph``)
are checked against finite differences by ``gradgradcheck``.
"""

from __future__ import annotations

import decimal
import itertools

import pytest
import torch
import torch.nn.functional as TF

import losskit

D = decimal.Decimal
CTX = decimal.Context(prec=150)
LOGITS = (-100.0, -30.0, -20.0, -3.0, -0.5, 0.0, 0.5, 3.0, 20.0, 30.0, 100.0)
LABELS = (0.0, 1.0, 0.3, 1e-6)
CASES = (  # (alpha, gamma, pos_weight); pos_weight only without focusing, as the public API
    (None, 0.0, None),
    (None, 0.0, 2.5),
    (0.25, 0.0, None),
    (None, 0.5, None),
    (0.25, 2.0, None),
    (0.6, 3.3, None),
)


def _sigmoid(x: D) -> D:
    return CTX.divide(1, CTX.add(1, CTX.exp(-x)))


def _exact_loss(x: D, y: D, alpha, gamma, pos_weight) -> D:
    p, pn = _sigmoid(x), _sigmoid(-x)
    pw = D(1) if pos_weight is None else D(pos_weight)
    bce = -(pw * y * CTX.ln(p) + (1 - y) * CTX.ln(pn))
    q = (1 - y) * p + y * pn
    focus = D(1) if gamma == 0.0 else CTX.power(q, D(gamma))
    alpha_t = D(1) if alpha is None else D(alpha) * y + (1 - D(alpha)) * (1 - y)
    return CTX.multiply(alpha_t * focus, bce)


def _exact(x: float, y: float, alpha, gamma, pos_weight) -> tuple[float, float]:
    with decimal.localcontext(CTX):
        xd, yd, h = D(x), D(y), D("1e-40")
        value = _exact_loss(xd, yd, alpha, gamma, pos_weight)
        up = _exact_loss(xd + h, yd, alpha, gamma, pos_weight)
        down = _exact_loss(xd - h, yd, alpha, gamma, pos_weight)
        return float(value), float((up - down) / (2 * h))


def _losskit(x: torch.Tensor, y: torch.Tensor, alpha, gamma, pos_weight) -> torch.Tensor:
    if gamma == 0.0 and alpha is None:
        pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=x.dtype)
        with losskit.use_backend("formula"):  # this closed form (torch's op cancels in the tails)
            return losskit.binary_cross_entropy_with_logits(x, y, reduction="none", pos_weight=pw)
    alpha = -1.0 if alpha is None else alpha  # a negative alpha: no class balance
    return losskit.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction="none")


@pytest.mark.parametrize("dtype", (torch.float64, torch.float32), ids=str)
@pytest.mark.parametrize(("alpha", "gamma", "pos_weight"), CASES)
def test_value_and_gradient_match_150_digit_arithmetic_down_to_the_tails(
    alpha, gamma, pos_weight, dtype
):
    pairs = list(itertools.product(LOGITS, LABELS))
    x = torch.tensor([a for a, _ in pairs], dtype=dtype, requires_grad=True)
    y = torch.tensor([b for _, b in pairs], dtype=dtype)
    loss = _losskit(x, y, alpha, gamma, pos_weight)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    # The exact answer at the inputs as rounded to dtype.
    exact = [
        _exact(a, b, alpha, gamma, pos_weight) for a, b in zip(x.tolist(), y.tolist(), strict=True)
    ]
    want_value = torch.tensor([v for v, _ in exact], dtype=torch.float64)
    want_grad = torch.tensor([g for _, g in exact], dtype=torch.float64)
    # Relative precision everywhere, down to results like 1e-44 (float64) or to float32's
    # smallest normal number (below it float32 cannot hold them).
    rtol, atol = (1e-12, 1e-300) if dtype == torch.float64 else (1e-5, 1e-37)
    torch.testing.assert_close(loss.detach().double(), want_value, rtol=rtol, atol=atol)
    torch.testing.assert_close(grad.double(), want_grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize(("alpha", "gamma", "pos_weight"), CASES)
def test_second_order_gradients_under_create_graph(alpha, gamma, pos_weight):
    torch.manual_seed(0)
    x = (torch.randn(3, 4, dtype=torch.float64) * 3).requires_grad_(True)
    y = torch.rand(3, 4, dtype=torch.float64)
    y[0] = (y[0] > 0.5).double()  # hard labels too

    def fn(inp):
        return _losskit(inp, y, alpha, gamma, pos_weight)

    assert torch.autograd.gradgradcheck(fn, (x,))


def test_bce_with_logits_gradient_reaches_the_target_as_in_torch():
    torch.manual_seed(1)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.rand(5, 3, dtype=torch.float64, requires_grad=True)
    pw = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    ours = torch.autograd.grad(
        losskit.binary_cross_entropy_with_logits(x, y, pos_weight=pw), (x, y)
    )
    theirs = torch.autograd.grad(TF.binary_cross_entropy_with_logits(x, y, pos_weight=pw), (x, y))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


def test_the_gradient_is_computed_only_when_autograd_will_ask_for_it(monkeypatch):
    from losskit import _binary_logits

    asked = []
    inner = _binary_logits._value_and_grad

    def spy(*args, need_grad):
        asked.append(need_grad)
        return inner(*args, need_grad=need_grad)

    monkeypatch.setattr(_binary_logits, "_value_and_grad", spy)
    x = torch.randn(4, 3, requires_grad=True)
    y = torch.rand(4, 3)
    with torch.no_grad():
        losskit.sigmoid_focal_loss(x, y)
    losskit.sigmoid_focal_loss(x.detach(), y)
    with losskit.use_backend("formula"):  # BCE's default is torch's op
        losskit.binary_cross_entropy_with_logits(x, y).backward()
    assert asked == [False, False, True]


@pytest.mark.parametrize("bad", (float("nan"), float("inf"), -0.5, 1.5))
def test_sigmoid_focal_refuses_a_target_outside_0_1_nan_included(bad):
    # (binary_cross_entropy_with_logits accepts any target, as torch's does.)
    y = torch.zeros(2, 3)
    y[1, 2] = bad
    with pytest.raises(ValueError, match=r"target should be between 0 and 1, found"):
        losskit.sigmoid_focal_loss(torch.zeros(2, 3), y)


def test_a_wider_target_or_pos_weight_dtype_is_promoted_as_torch_does():
    torch.manual_seed(2)
    x = torch.randn(4, 3, requires_grad=True)
    y = torch.rand(4, 3)
    pw = torch.rand(3, dtype=torch.float64) + 0.5
    for target, pos_weight in ((y.double(), None), (y, pw), (y.double(), pw)):
        got = losskit.binary_cross_entropy_with_logits(x, target, pos_weight=pos_weight)
        want = TF.binary_cross_entropy_with_logits(
            x.double(), target.double(), pos_weight=pos_weight
        )
        assert got.dtype == torch.float32  # losskit returns the input's dtype
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=0)


def test_pos_weight_times_an_overflowing_log_sigmoid_is_not_nan():
    # p_w log σ(x) overflows float32 to -inf at x = -1e38; y = 0 must still give 0, as torch.
    x = torch.tensor([-1e38, -1e38], requires_grad=True)
    y = torch.tensor([0.0, 1.0])
    pw = torch.tensor(10.0)
    got = losskit.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction="none")
    want = TF.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction="none")
    torch.testing.assert_close(got, want)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("with_pos_weight", (False, True))
def test_forward_mode_tangents_of_logits_target_and_pos_weight_match_torch(with_pos_weight):
    fwad = torch.autograd.forward_ad
    torch.manual_seed(3)
    x, dx = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    y, dy = torch.rand(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    pw, dpw = torch.rand(3, dtype=torch.float64) + 0.5, torch.randn(3, dtype=torch.float64)
    for duals in ("x", "y", "xy", "pw", "xypw"):
        if "pw" in duals and not with_pos_weight:
            continue
        tangents = []
        for fn in (losskit.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits):
            with fwad.dual_level():
                a = fwad.make_dual(x, dx) if "x" in duals else x
                b = fwad.make_dual(y, dy) if "y" in duals else y
                kw = {}
                if with_pos_weight:  # torch refuses a dual pos_weight: only ours gets one
                    dual_pw = "pw" in duals and fn is losskit.binary_cross_entropy_with_logits
                    kw["pos_weight"] = fwad.make_dual(pw, dpw) if dual_pw else pw
                out = fn(a, b, reduction="sum", **kw)
                tangents.append(fwad.unpack_dual(out).tangent)
        ours, torchs = tangents
        if "pw" in duals:  # add dB/dp_w = -y log σ(x) to torch's by hand
            torchs = (0.0 if torchs is None else torchs) + (-y * TF.logsigmoid(x) * dpw).sum()
        torch.testing.assert_close(ours, torchs, rtol=1e-12, atol=1e-12)


def test_vmap_over_targets_with_shared_logits_then_backward():
    torch.manual_seed(4)
    x = torch.randn(4, 3, requires_grad=True)
    targets = torch.rand(5, 4, 3)
    for fn in (losskit.sigmoid_focal_loss, losskit.binary_cross_entropy_with_logits):
        out = torch.func.vmap(lambda t, fn=fn: fn(x, t, reduction="sum"))(targets)
        (got,) = torch.autograd.grad(out.sum(), x)
        (want,) = torch.autograd.grad(sum(fn(x, t, reduction="sum") for t in targets), x)
        torch.testing.assert_close(got, want)
