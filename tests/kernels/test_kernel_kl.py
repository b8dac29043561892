"""KL divergence and distillation kernels against the PyTorch path and torch's kl_div."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

pytest.importorskip("triton")

from kernel_helpers import TOL, close, grads, leaf

import losskit
import losskit.distillation as D
from losskit.kernels import use_kernels
from losskit.kernels.kl import function as kl_fn
from losskit.reference import distillation as R

REDUCTIONS = ["none", "mean", "sum", "batchmean"]


@pytest.fixture(params=["single", "multi"])
def block(request, monkeypatch):
    if request.param == "multi":  # rows longer than the block: two or three passes
        monkeypatch.setattr(kl_fn, "MAX_SINGLE_BLOCK", 16)
        monkeypatch.setattr(kl_fn, "MULTI_BLOCK", 16)
    monkeypatch.setattr(kl_fn, "POINTWISE_BLOCK", 64)
    return request.param


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("log_target", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_kl_div_matches_torch(kernels, block, reduction, log_target, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.log_softmax(torch.randn(5, 37, generator=g), 1).to(dtype)
    t = torch.softmax(torch.randn(5, 37, generator=g), 1)
    t[0, :3] = 0.0  # xlogy(0, 0) = 0
    if log_target:
        t = torch.log_softmax(torch.randn(5, 37, generator=g), 1)
    t = t.to(dtype)
    a, b = leaf(x), leaf(x.double())
    ours = losskit.kl_div(a, t, reduction, log_target)
    assert "KLDivFunction" in type(ours.grad_fn).__name__
    theirs = TF.kl_div(b, t.double(), reduction=reduction, log_target=log_target)
    assert ours is not None and ours.dtype == dtype
    close(ours, theirs, *TOL[dtype])
    close(grads(ours, [a])[0], grads(theirs, [b])[0], *TOL[dtype])


def test_kl_div_negative_target_nan_and_empty(kernels, block):
    x = torch.randn(2, 3)
    t = torch.tensor([[0.5, -0.1, 0.6], [0.2, 0.3, 0.5]])
    out = losskit.kl_div(x, t, "none")
    theirs = TF.kl_div(x, t, reduction="none")
    assert torch.equal(out.isnan(), theirs.isnan()) and out.isnan().any()
    for reduction in ("mean", "sum", "batchmean"):
        e = torch.randn(0, 4, requires_grad=True)
        ours = losskit.kl_div(e, torch.rand(0, 4), reduction)
        theirs = TF.kl_div(e, torch.rand(0, 4), reduction=reduction)
        assert torch.equal(ours.isnan(), theirs.isnan())


def _distill(fn, *args, **kwargs):
    with use_kernels("always"):
        out = fn(*args, **kwargs)
    if args[0].requires_grad:
        assert "DistillationFunction" in type(out.grad_fn).__name__
    return out


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", ["kl", "jsd"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_distillation_matches_pytorch_path_and_reference(kernels, block, reduction, loss, dtype):
    g = torch.Generator().manual_seed(1)
    s = (torch.randn(2, 3, 37, generator=g) * 3).to(dtype)
    t = (torch.randn(2, 3, 37, generator=g) * 2).to(dtype)
    fn, kw = (D.distillation_kl_div, {}) if loss == "kl" else (D.jsd, {"beta": 0.3})
    kw.update(temperature=1.7, reduction=reduction)
    a, b = leaf(s), leaf(s)
    ours = _distill(fn, a, t, **kw)
    with use_kernels("never"):
        theirs = fn(b, t, **kw)
    ref = (R.distillation_kl_div if loss == "kl" else R.jsd)(
        s.double().numpy(), t.double().numpy(), **kw
    )
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(ours.double().detach().numpy(), ref, rtol=rtol * 10, atol=atol * 10)
    close(ours, theirs, rtol, atol)
    close(grads(ours, [a])[0], grads(theirs, [b])[0], rtol, atol)


@pytest.mark.parametrize("loss", ["kl", "jsd"])
def test_distillation_extreme_logits_and_empty(kernels, block, loss):
    fn = D.distillation_kl_div if loss == "kl" else D.jsd
    big = torch.zeros(2, 37)
    big[0, :3] = torch.tensor([1e4, -1e4, 0.0])
    big[1, :3] = torch.tensor([-1e4, 1e4, 1e4])
    a, b = leaf(big), leaf(big)
    ours = _distill(fn, a, big.flip(1), reduction="sum")
    with use_kernels("never"):
        theirs = fn(b, big.flip(1), reduction="sum")
    assert torch.isfinite(ours)
    close(ours, theirs, 1e-5, 1e-3)
    close(grads(ours, [a])[0], grads(theirs, [b])[0])
    e = torch.randn(0, 37, requires_grad=True)
    assert _distill(fn, e, torch.randn(0, 37)).isnan()
    assert _distill(fn, e, torch.randn(0, 37), reduction="sum") == 0
