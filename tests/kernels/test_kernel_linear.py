"""Chunked linear cross entropy: PyTorch path and kernel path against the unfused formula.

The oracle is ``torch.nn.functional.cross_entropy(torch.nn.functional.linear(...))`` (what
``torch.nn.functional.linear_cross_entropy`` computes) in float64, and the NumPy reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from kernel_helpers import TOL, close, grads, leaf

import losskit.linear as L
from losskit.nn.linear import LinearCrossEntropyLoss
from losskit.reference.linear import linear_cross_entropy as ref_lce

N, H, V = 7, 5, 37


def _oracle(x, w, t, b=None, **kw):
    return TF.cross_entropy(TF.linear(x, w, b), t, **kw)


def _inputs(dtype, seed=0, bias=False, probs=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, H, generator=g).to(dtype)
    w = torch.randn(V, H, generator=g).to(dtype)
    b = torch.randn(V, generator=g).to(dtype) if bias else None
    if probs:
        t = torch.softmax(torch.randn(N, V, generator=g), 1).to(dtype)
    else:
        t = torch.randint(0, V, (N,), generator=g)
        t[2] = -100
    return x, w, b, t, g


OPTS = [{}, {"bias": True}, {"weight": True, "label_smoothing": 0.2}, {"probs": True}]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", OPTS, ids=lambda o: "+".join(o) or "plain")
@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_pytorch_path_matches_unfused_formula(pytorch_path, reduction, opts, chunk):
    x, w, b, t, g = _inputs(
        torch.float64, bias=opts.get("bias", False), probs=opts.get("probs", False)
    )
    kw = {"reduction": reduction, "label_smoothing": opts.get("label_smoothing", 0.0)}
    if opts.get("weight"):
        kw["weight"] = torch.rand(V, generator=g, dtype=torch.float64) + 0.2
    ins = [leaf(x), leaf(w)] + ([leaf(b)] if b is not None else [])
    ref_ins = [leaf(v) for v in ins]
    ours = L.linear_cross_entropy(
        *ins[:2], t, linear_bias=ins[2] if b is not None else None, chunk_size=chunk, **kw
    )
    theirs = _oracle(*ref_ins[:2], t, ref_ins[2] if b is not None else None, **kw)
    close(ours, theirs, 1e-10, 1e-12)
    for a, c in zip(grads(ours, ins), grads(theirs, ref_ins), strict=True):
        close(a, c, 1e-10, 1e-12)
    np_kw = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    expected = ref_lce(
        x.numpy(), w.numpy(), t.numpy(), linear_bias=None if b is None else b.numpy(), **np_kw
    )
    np.testing.assert_allclose(ours.detach().numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", OPTS[:3], ids=lambda o: "+".join(o) or "plain")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_kernel_path_matches_unfused_formula(kernels, reduction, opts, dtype):
    x, w, b, t, g = _inputs(dtype, seed=1, bias=opts.get("bias", False))
    kw = {"reduction": reduction, "label_smoothing": opts.get("label_smoothing", 0.0)}
    if opts.get("weight"):
        kw["weight"] = torch.rand(V, generator=g) + 0.2
    ins = [leaf(x), leaf(w)] + ([leaf(b)] if b is not None else [])
    ref_ins = [leaf(v.double()) for v in ins]
    bias = ins[2] if b is not None else None
    ours = L.linear_cross_entropy(ins[0], ins[1], t, linear_bias=bias, chunk_size=3, **kw)
    ref_kw = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    theirs = _oracle(ref_ins[0], ref_ins[1], t, ref_ins[2] if b is not None else None, **ref_kw)
    rtol, atol = TOL[dtype]
    close(ours, theirs, rtol, atol * 5)
    for a, c in zip(grads(ours, ins), grads(theirs, ref_ins), strict=True):
        close(a, c, rtol, atol * 5)


def test_full_logits_never_exist(monkeypatch):
    from losskit import _chunked_linear as chunked

    seen = []
    chunk_logits = chunked.chunk_logits

    def spy(xc, w, b, out):
        seen.append(xc.shape[0])
        return chunk_logits(xc, w, b, out)

    monkeypatch.setattr(chunked, "chunk_logits", spy)
    x, w, _, t, _ = _inputs(torch.float64)
    loss = L.linear_cross_entropy(leaf(x), leaf(w), t, chunk_size=2, reduction="none")
    loss.sum().backward()
    # Chunks of at most 2 rows; the ignored row never reaches a matmul; the backward recomputes.
    assert seen and max(seen) <= 2 and sum(seen) == 2 * (N - 1)


def test_edge_cases_match_torch(pytorch_path):
    w = torch.randn(V, H, dtype=torch.float64)
    for x, t in (
        (torch.randn(0, H, dtype=torch.float64), torch.zeros(0, dtype=torch.long)),
        (torch.randn(3, H, dtype=torch.float64), torch.full((3,), -100)),
    ):
        for reduction in ("mean", "sum", "none"):
            a, c = leaf(x), leaf(w)
            ours = L.linear_cross_entropy(a, c, t, reduction=reduction)
            theirs = _oracle(x, w, t, reduction=reduction)
            assert torch.equal(ours.isnan(), theirs.isnan())
            close(ours, theirs)
            ga, gc = grads(ours, [a, c])
            assert not ga.abs().sum() and not gc.abs().sum()


def test_pytorch_path_allows_a_second_backward(pytorch_path):
    x, w, _, t, _ = _inputs(torch.float64)
    a = leaf(x)
    loss = L.linear_cross_entropy(a, w, t)
    (g1,) = torch.autograd.grad(loss, [a], retain_graph=True)
    (g2,) = torch.autograd.grad(loss, [a])
    close(g1, g2, 0, 0)


def test_module_owns_the_projection_and_matches_the_functional():
    torch.manual_seed(0)
    weight = torch.rand(V, dtype=torch.float64)
    crit = LinearCrossEntropyLoss(
        H, V, bias=True, dtype=torch.float64, weight=weight, label_smoothing=0.1, chunk_size=2
    )
    assert crit.linear.weight.shape == (V, H) and crit.linear.bias.shape == (V,)
    assert "weight" in dict(crit.named_buffers())
    x, _, _, t, _ = _inputs(torch.float64)
    out = crit(x, t)
    expected = _oracle(
        x, crit.linear.weight, t, crit.linear.bias, weight=weight, label_smoothing=0.1
    )
    close(out, expected)
    out.backward()
    assert crit.linear.weight.grad is not None and crit.linear.bias.grad is not None


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"reduction": "avg"}, ValueError, "'avg' is not a valid value for reduction"),
        ({"label_smoothing": 1.5}, ValueError, "label_smoothing"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        (
            {"weight": torch.ones(3)},
            ValueError,
            r"weight must be a 1-D tensor with one entry per class \(37\)",
        ),
        ({"ignore_index": 1.0}, TypeError, "ignore_index must be an int"),
    ],
)
def test_module_constructor_validates(kwargs, error, match):
    with pytest.raises(error, match=match):
        LinearCrossEntropyLoss(H, V, **kwargs)
