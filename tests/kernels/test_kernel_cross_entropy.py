"""The fused cross-entropy kernel against the PyTorch path, torch and the NumPy reference.

Runs on the CPU under ``TRITON_INTERPRET=1`` (see ``conftest.py``); shapes are tiny and odd
(37 classes: not a multiple of any block), and the multi-block path is forced with a block of 16.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

pytest.importorskip("triton")

from kernel_helpers import TOL, close, grads, leaf

import losskit
from losskit.kernels import KernelUnsupportedError, use_kernels
from losskit.kernels.cross_entropy import function as ce_fn
from losskit.linear import cross_entropy_with_z_loss
from losskit.reference.linear import cross_entropy_with_z_loss as ref_z

C = 37


@pytest.fixture(params=["single", "multi"])
def block(request, monkeypatch):
    """Both code paths: the row in registers, and rows longer than the block (two passes, and
    a persistent grid of 3 programs looping over the rows)."""
    multi = request.param == "multi"
    monkeypatch.setattr(ce_fn, "FORCE_BLOCK", 16 if multi else None)
    monkeypatch.setattr(ce_fn, "FORCE_PROGRAMS", 3 if multi else None)
    return request.param


def _kernel_ce(*args, **kwargs):
    with use_kernels("always"):  # the public function, its kernel backend forced
        out = losskit.cross_entropy(*args, **kwargs)
    if args[0].requires_grad:  # the kernel's Function, not the PyTorch graph
        assert "CrossEntropyFunction" in type(out.grad_fn).__name__
    return out


def _torch_path_ce(*args, **kwargs):
    with use_kernels("never"):
        return losskit.cross_entropy(*args, **kwargs)


def _targets(n: int, g: torch.Generator, ignore: int = -100, frac: float = 0.3) -> torch.Tensor:
    t = torch.randint(0, C, (n,), generator=g)
    t[torch.rand(n, generator=g) < frac] = ignore
    t[0] = 3  # at least one kept target
    return t


OPTIONS = [
    {},
    {"weight": True},
    {"label_smoothing": 0.2},
    {"weight": True, "label_smoothing": 0.1},
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "+".join(o) or "plain")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_values_and_grads_match_the_pytorch_path(kernels, block, reduction, opts, dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(7, C, generator=g) * 3).to(dtype)
    t = _targets(7, g)
    kw = {"reduction": reduction, "label_smoothing": opts.get("label_smoothing", 0.0)}
    if opts.get("weight"):
        kw["weight"] = torch.rand(C, generator=g) + 0.2
    a, b = leaf(x), leaf(x)
    ours = _kernel_ce(a, t, **kw)
    theirs = _torch_path_ce(b, t, **kw)
    assert ours.dtype == dtype and ours.shape == theirs.shape
    rtol, atol = TOL[dtype]
    close(ours, theirs, rtol, atol)
    close(grads(ours, [a])[0], grads(theirs, [b])[0], rtol, atol)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_float16_and_ignore_index_in_range(kernels, block, reduction):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, C, generator=g).half()
    t = torch.randint(0, C, (5,), generator=g)
    t[1] = 4
    kw = {"ignore_index": 4, "reduction": reduction, "weight": torch.rand(C, generator=g) + 0.5}
    a, b = leaf(x), leaf(x)
    ours, theirs = _kernel_ce(a, t, **kw), _torch_path_ce(b, t, **kw)
    close(ours, theirs, *TOL[torch.float16])
    close(grads(ours, [a])[0], grads(theirs, [b])[0], *TOL[torch.float16])


@pytest.mark.parametrize(
    "shape",
    [(C,), (3, C, 2, 3), (2, C, 5)],
    ids=["(C,)", "(N,C,d1,d2)", "(N,C,d)"],
)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_any_leading_shape_matches_torch(kernels, block, shape, reduction):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=g, dtype=torch.float32)
    t_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
    t = torch.randint(0, C, t_shape, generator=g)
    if t.dim():
        t.view(-1)[1] = -100
    a, b = leaf(x), leaf(x)
    ours = _kernel_ce(a, t, reduction=reduction, label_smoothing=0.1)
    theirs = TF.cross_entropy(b, t, reduction=reduction, label_smoothing=0.1)
    assert ours.shape == theirs.shape
    close(ours, theirs)
    close(grads(ours, [a])[0], grads(theirs, [b])[0])


def test_non_contiguous_logits(kernels, block):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(C, 6, generator=g).t()  # (6, C) with class stride 6
    assert not x.is_contiguous()
    t = _targets(6, g)
    weight = torch.rand(C, generator=g) + 0.1
    a, b = leaf(x), leaf(x.contiguous())
    ours = _kernel_ce(a, t, weight=weight, reduction="sum")
    theirs = TF.cross_entropy(b, t, weight=weight, reduction="sum")
    close(ours, theirs)
    close(grads(ours, [a])[0], grads(theirs, [b])[0])


def test_input_is_not_modified_and_inplace_backward_writes_the_gradient(kernels, block):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, C, generator=g)
    t = _targets(5, g)
    a, b = leaf(x), leaf(x)
    ours = _kernel_ce(a, t)
    close(a, x, 0, 0)  # the forward (which wrote the gradient) left the logits alone
    expected = grads(TF.cross_entropy(b, t), [b])[0]
    close(grads(ours, [a])[0], expected)
    close(a, x, 0, 0)

    logits = x.clone().requires_grad_(True)
    with use_kernels("always"):
        loss = cross_entropy_with_z_loss(logits * 1.0, t, inplace_backward=True)
    close(grads(loss, [logits])[0], expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_edge_all_ignored_empty_and_huge_logits_match_torch(kernels, block, dtype, reduction):
    cases = [
        (torch.randn(3, C), torch.full((3,), -100)),
        (torch.randn(0, C), torch.zeros(0, dtype=torch.long)),
    ]
    huge = torch.zeros(2, C)
    huge[0, :3] = torch.tensor([1e4, -1e4, 5.0])
    huge[1, :3] = torch.tensor([-1e4, 1e4, 1e4])
    cases.append((huge, torch.tensor([1, 0])))
    for x, t in cases:
        x = x.to(dtype)
        a, b = leaf(x), leaf(x.float())
        ours = _kernel_ce(a, t, reduction=reduction, label_smoothing=0.1)
        theirs = TF.cross_entropy(b, t, reduction=reduction, label_smoothing=0.1)
        assert torch.equal(ours.float().isnan(), theirs.isnan())
        close(ours, theirs, *TOL[dtype])
        if x.numel():
            ga, gb = grads(ours, [a])[0], grads(theirs, [b])[0]
            assert torch.isfinite(ga).all()
            close(ga, gb, *TOL[dtype])


def test_out_of_range_target_with_checks_off_gives_nan_not_a_crash(kernels):
    losskit.set_checks("shapes")
    try:
        x = torch.randn(3, C)
        out = _kernel_ce(x, torch.tensor([1, C + 5, 2]), reduction="none")
    finally:
        losskit.set_checks("all")
    assert torch.isnan(out[1]) and torch.isfinite(out[[0, 2]]).all()


def test_no_host_synchronisation_with_checks_off(kernels, block, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("host synchronisation in the kernel path")

    g = torch.Generator().manual_seed(5)
    x = leaf(torch.randn(6, C, generator=g))
    t = _targets(6, g)
    w = torch.rand(C, generator=g) + 0.1
    losskit.set_checks("shapes")
    try:
        for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
            monkeypatch.setattr(torch.Tensor, name, forbidden)
        for reduction in ("mean", "none"):
            loss = cross_entropy_with_z_loss(
                x, t, w, reduction=reduction, label_smoothing=0.1, lse_square_scale=1e-3
            )
            loss.backward(torch.ones_like(loss))
    finally:
        monkeypatch.undo()
        losskit.set_checks("all")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "opts",
    [
        {"lse_square_scale": 0.1},
        {"softcap": 3.0},
        {"lse_square_scale": 0.05, "softcap": 4.0, "label_smoothing": 0.1, "weight": True},
    ],
    ids=["z", "softcap", "all"],
)
def test_z_loss_and_softcap_match_reference_and_pytorch_path(kernels, block, reduction, opts):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(6, C, generator=g) * 4
    t = _targets(6, g)
    kw = dict(opts, reduction=reduction)
    if kw.get("weight"):
        kw["weight"] = torch.rand(C, generator=g) + 0.2
    a, b = leaf(x), leaf(x)
    loss, z = cross_entropy_with_z_loss(a, t, return_z_loss=True, **kw)
    assert "CrossEntropyFunction" in type(loss.grad_fn).__name__ and not z.requires_grad
    with use_kernels("never"):
        loss_t, z_t = cross_entropy_with_z_loss(b, t, return_z_loss=True, **kw)
    np_kw = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    ref_loss, ref_zv = ref_z(x.double().numpy(), t.numpy(), return_z_loss=True, **np_kw)
    np.testing.assert_allclose(loss.detach().numpy(), ref_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z.numpy(), ref_zv, rtol=1e-5, atol=1e-5)
    close(loss, loss_t)
    close(z, z_t)
    close(grads(loss, [a])[0], grads(loss_t, [b])[0])


def test_second_backward_raises(kernels):
    x = leaf(torch.randn(4, C))
    loss = _kernel_ce(x, torch.tensor([1, 2, 3, 4]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second backward"):
        loss.backward()


def test_unsupported_calls_raise_under_always_and_fall_back_under_auto():
    x = torch.randn(4, C, dtype=torch.float64)
    t = torch.tensor([1, 2, 3, 4])
    with use_kernels("always"), pytest.raises(KernelUnsupportedError, match="float64"):
        losskit.cross_entropy(x, t)
    with use_kernels("always"), pytest.raises(KernelUnsupportedError, match="probability"):
        losskit.cross_entropy(x.float(), torch.rand(4, C))
    with use_kernels("auto"):  # CPU tensors: torch's op
        out = losskit.cross_entropy(x.float().requires_grad_(), t)
        assert "CrossEntropyFunction" not in type(out.grad_fn).__name__
