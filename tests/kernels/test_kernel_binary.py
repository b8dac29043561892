"""The one-pass BCE-with-logits and sigmoid focal kernels against PyTorch formulas.

The focal oracle is torchvision's formula written here in float64 (``ce * (1 - p_t) ** gamma``,
``alpha_t`` unless ``alpha < 0``); the BCE oracle is ``torch.nn.functional`` in float64.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF

pytest.importorskip("triton")

from kernel_helpers import TOL, close, grads, leaf

import losskit


def _focal_oracle(x, y, alpha, gamma, reduction):
    x, y = x.double(), y.double()
    p = torch.sigmoid(x)
    ce = TF.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


def _bce(*args, **kwargs):
    # The public function; the fixture `kernels` forces its kernel backend.
    out = losskit.binary_cross_entropy_with_logits(*args, **kwargs)
    if args[0].requires_grad and torch.is_grad_enabled():
        assert "BinaryLossFunction" in type(out.grad_fn).__name__
    return out


def _focal(*args, **kwargs):
    # The public function; the fixture `kernels` forces its kernel backend.
    out = losskit.sigmoid_focal_loss(*args, **kwargs)
    if args[0].requires_grad and torch.is_grad_enabled():
        assert "BinaryLossFunction" in type(out.grad_fn).__name__
    return out


# 3 x 67 = 201 elements: not a multiple of the block; three programs with a block of 128.
SHAPE = (3, 67)


@pytest.fixture(autouse=True)
def small_block(monkeypatch):
    from losskit.kernels.binary import function

    monkeypatch.setattr(function, "BLOCK", 128)


WEIGHTS = {
    "plain": {},
    "weight (C,)": {"weight": lambda g: torch.rand(67, generator=g)},
    "pos_weight (C,)": {"pos_weight": lambda g: torch.rand(67, generator=g) * 3},
    "weight (3,1) + pos_weight": {
        "weight": lambda g: torch.rand(3, 1, generator=g),
        "pos_weight": lambda g: torch.rand(67, generator=g) * 3,
    },
    "full weight + scalar pos_weight": {
        "weight": lambda g: torch.rand(*SHAPE, generator=g),
        "pos_weight": lambda g: torch.tensor([2.5]),
    },
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weights", list(WEIGHTS), ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_bce_with_logits_matches_torch(kernels, reduction, weights, dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(SHAPE, generator=g) * 4).to(dtype)
    y = torch.rand(SHAPE, generator=g).to(dtype)
    kw = {k: f(g) for k, f in WEIGHTS[weights].items()}
    a, b = leaf(x), leaf(x.double())
    ours = _bce(a, y, reduction=reduction, **kw)
    theirs = TF.binary_cross_entropy_with_logits(
        b, y.double(), reduction=reduction, **{k: v.double() for k, v in kw.items()}
    )
    assert ours.dtype == dtype and ours.shape == theirs.shape
    close(ours, theirs, *TOL[dtype])
    close(grads(ours, [a])[0], grads(theirs, [b])[0], *TOL[dtype])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (-1.0, 1.5), (0.6, 0.0), (0.25, 3.0)])
@pytest.mark.parametrize("labels", ["hard", "soft", "integer"])
def test_sigmoid_focal_matches_the_torchvision_formula(kernels, reduction, alpha, gamma, labels):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(SHAPE, generator=g) * 3
    if labels == "soft":
        y = torch.rand(SHAPE, generator=g)
    else:
        y = (torch.rand(SHAPE, generator=g) < 0.3).float()
        if labels == "integer":
            y = y.long()
    a, b = leaf(x), leaf(x.double())
    ours = _focal(a, y, alpha, gamma, reduction)
    theirs = _focal_oracle(b, y, alpha, gamma, reduction)
    close(ours, theirs)
    close(grads(ours, [a])[0], grads(theirs, [b])[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_extreme_logits_and_small_gamma_stay_finite(kernels, dtype):
    x = torch.tensor([[1e4, -1e4, 0.0, 30.0], [-1e4, 1e4, -30.0, 5.0]]).to(dtype)
    y = torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.5]]).to(dtype)
    a = leaf(x)
    for gamma in (0.0, 0.5, 2.0):
        loss = _focal(a, y, 0.25, gamma, "none")
        (g,) = grads(loss, [a])
        assert torch.isfinite(loss).all() and torch.isfinite(g).all()
        # p_t = 1 exactly (x = 1e4, y = 1): zero loss and zero gradient, also for gamma < 1.
        if gamma > 0:
            assert loss[0, 0] == 0 and g[0, 0] == 0
    b, c = leaf(x), leaf(x.double())
    ours = _bce(b, y, reduction="sum", pos_weight=torch.tensor([2.0, 1.0, 0.5, 1.0]).to(dtype))
    theirs = TF.binary_cross_entropy_with_logits(
        c, y.double(), reduction="sum", pos_weight=torch.tensor([2.0, 1.0, 0.5, 1.0]).double()
    )
    close(ours, theirs, *TOL[dtype])
    close(grads(ours, [b])[0], grads(theirs, [c])[0], *TOL[dtype])


def test_empty_input_and_non_contiguous(kernels):
    for reduction, expected in (("mean", float("nan")), ("sum", 0.0)):
        x = torch.randn(0, 5, requires_grad=True)
        out = _bce(x, torch.rand(0, 5), reduction=reduction)
        assert out.isnan().item() if expected != expected else out.item() == expected
        out.backward()
        assert x.grad.shape == (0, 5)
    base = torch.randn(67, 3) * 2
    x = base.t()  # (3, 67), not contiguous
    y = torch.rand(67, 3).t()
    a, b = leaf(x), leaf(x.double())
    ours = _focal(a, y, 0.25, 2.0, "sum")
    theirs = _focal_oracle(b, y, 0.25, 2.0, "sum")
    close(ours, theirs)
    close(grads(ours, [a])[0], grads(theirs, [b])[0])


def test_gradient_computed_in_the_forward_is_scaled_by_upstream(kernels):
    # 2 * loss and loss * 0.5 after the fact: the backward must apply the incoming gradient.
    g = torch.Generator().manual_seed(2)
    x = torch.randn(SHAPE, generator=g)
    y = torch.rand(SHAPE, generator=g)
    for factor in (1.0, 2.0, -0.5):
        a, b = leaf(x), leaf(x.double())
        (ga,) = torch.autograd.grad(_bce(a, y) * factor, [a])
        (gb,) = torch.autograd.grad(
            TF.binary_cross_entropy_with_logits(b, y.double()) * factor, [b]
        )
        close(ga, gb)


def test_target_requiring_grad_falls_back_or_raises():
    from losskit.kernels import KernelUnsupportedError, use_kernels

    x = torch.randn(3, 4)
    y = torch.rand(3, 4, requires_grad=True)
    with use_kernels("always"), pytest.raises(KernelUnsupportedError, match="target requires"):
        losskit.binary_cross_entropy_with_logits(x, y)
    with use_kernels("auto"):  # CPU tensors and a target gradient: torch's op
        out = losskit.binary_cross_entropy_with_logits(x.requires_grad_(), y)
        assert "BinaryLossFunction" not in type(out.grad_fn).__name__
