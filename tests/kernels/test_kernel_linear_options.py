"""The kernel path of the fused LM head with its new options, under ``TRITON_INTERPRET=1``.

``use_backend("kernel")`` pins the Triton path (each chunk's statistics and gradient by the
cross-entropy kernel, written over the chunk's logits); the oracle is the unfused formula in
float64 with softcap, logit scale and z-loss written out.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF

import losskit

pytest.importorskip("triton")
# The interpreter evaluates masked-off lanes with NumPy (inf * 0): harmless.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

N, H, V = 7, 5, 37


def _oracle(x, w, t, b, *, softcap, logit_scale, z, reduction, weight=None, eps=0.0):
    logits = TF.linear(x.double(), w.double(), None if b is None else b.double()) * logit_scale
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    cw = None if weight is None else weight.double()
    ce = TF.cross_entropy(logits, t, cw, reduction=reduction, label_smoothing=eps)
    keep = t != -100
    zr = torch.where(keep, z * torch.logsumexp(logits, 1) ** 2, 0.0)
    if reduction == "none":
        return ce + zr
    return ce + (zr.sum() if reduction == "sum" else zr.sum() / keep.sum())


CASES = [
    ("mean", {"softcap": 3.0}),
    ("mean", {"logit_scale": 0.5, "lse_square_scale": 0.01, "bias": True}),
    ("none", {"softcap": 2.0, "lse_square_scale": 0.02, "logit_scale": 1.5}),
    ("sum", {"softcap": 4.0, "weight": True, "label_smoothing": 0.1}),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(("reduction", "opts"), CASES, ids=lambda v: str(v))
def test_kernel_path_with_softcap_scale_and_z_loss(reduction, opts, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, H, generator=g).to(dtype).requires_grad_()
    w = torch.randn(V, H, generator=g).to(dtype).requires_grad_()
    b = torch.randn(V, generator=g).to(dtype).requires_grad_() if opts.get("bias") else None
    weight = torch.rand(V, generator=g) + 0.2 if opts.get("weight") else None
    t = torch.randint(0, V, (N,), generator=g)
    t[2] = -100
    kw = {k: opts[k] for k in ("softcap", "logit_scale", "lse_square_scale") if k in opts}
    with losskit.use_backend("kernel"):
        out = losskit.linear_cross_entropy(
            x, w, t, linear_bias=b, weight=weight, reduction=reduction, chunk_size=3,
            label_smoothing=opts.get("label_smoothing", 0.0), **kw,
        )  # fmt: skip
    ref = _oracle(
        x, w, t, b, softcap=kw.get("softcap"), logit_scale=kw.get("logit_scale", 1.0),
        z=kw.get("lse_square_scale", 0.0), reduction=reduction, weight=weight,
        eps=opts.get("label_smoothing", 0.0),
    )  # fmt: skip
    assert out.dtype == torch.float32
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(out.double(), ref.detach(), rtol=tol, atol=tol)
    ins = [x, w] + ([b] if b is not None else [])
    up = torch.randn(out.shape, generator=g)
    for a, c in zip(
        torch.autograd.grad(out, ins, up), torch.autograd.grad(ref, ins, up.double()), strict=True
    ):
        torch.testing.assert_close(a.double(), c.double(), rtol=tol * 3, atol=tol * 3)


def test_kernel_path_under_autocast():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, H, generator=g, requires_grad=True)
    w = torch.randn(V, H, generator=g, requires_grad=True)
    t = torch.randint(0, V, (N,), generator=g)
    with losskit.use_backend("kernel"), torch.autocast("cpu", torch.bfloat16):
        out = losskit.linear_cross_entropy(x, w, t, softcap=3.0, chunk_size=4)
    ref = _oracle(x, w, t, None, softcap=3.0, logit_scale=1.0, z=0.0, reduction="mean")
    torch.testing.assert_close(out.double(), ref.detach(), rtol=3e-2, atol=3e-2)
    gx, gw = torch.autograd.grad(out, [x, w])
    rx, rw = torch.autograd.grad(ref, [x, w])
    assert gw.dtype == torch.float32
    torch.testing.assert_close(gx.double(), rx.double(), rtol=0.1, atol=2e-2)
    torch.testing.assert_close(gw.double(), rw.double(), rtol=0.1, atol=2e-2)


def test_kernel_refuses_probability_targets_with_a_reason():
    x, w = torch.randn(3, 4), torch.randn(5, 4)
    t = torch.softmax(torch.randn(3, 5), 1)
    with (
        losskit.use_backend("kernel"),
        pytest.raises(losskit.BackendUnsupportedError, match="probability targets"),
    ):
        losskit.linear_cross_entropy(x, w, t)
