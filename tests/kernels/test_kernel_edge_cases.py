"""Cases an audit of the kernel paths found wrong, each against the PyTorch path (or torch).

Runs under ``TRITON_INTERPRET=1``; the multi-block paths are forced with 16-wide blocks so that a
row whose first block is entirely ``-inf`` (a masked start of the vocabulary) needs few classes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF

pytest.importorskip("triton")

from kernel_helpers import close, grads, leaf

import losskit
from losskit.kernels import use_kernels
from losskit.kernels.cross_entropy import function as ce_fn
from losskit.kernels.kl import function as kl_fn


def _both_paths(fn, *inputs):
    """(value, gradients) on the kernel path (the `kernels` fixture) and the PyTorch path."""
    kern = [leaf(t) if t.is_floating_point() else t for t in inputs]
    out = fn(*kern)
    with use_kernels("never"):
        ref_in = [leaf(t) if t.is_floating_point() else t for t in inputs]
        ref = fn(*ref_in)
    diff = [i for i, t in enumerate(inputs) if t.is_floating_point()]
    return (out, grads(out, [kern[i] for i in diff])), (ref, grads(ref, [ref_in[i] for i in diff]))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32])
def test_cross_entropy_small_integer_targets_with_a_class_weight(kernels, dtype):
    # A uint8 target once indexed the weight as a boolean mask (a wrong loss, no error).
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 5, 2, 3, 1]).to(dtype)
    w = torch.rand(6, generator=torch.Generator().manual_seed(1)) + 0.5
    for reduction in ("mean", "sum", "none"):
        (out, g), (ref, g_ref) = _both_paths(
            lambda a, b, r=reduction: losskit.cross_entropy(a, b, weight=w, reduction=r), x, t
        )
        close(out, TF.cross_entropy(x, t.long(), weight=w, reduction=reduction))
        close(out, ref)
        close(g[0], g_ref[0])


def test_online_softmax_after_an_all_minus_inf_first_block(kernels, monkeypatch):
    monkeypatch.setattr(ce_fn, "FORCE_BLOCK", 16)
    monkeypatch.setattr(kl_fn, "MAX_SINGLE_BLOCK", 16)
    monkeypatch.setattr(kl_fn, "MULTI_BLOCK", 16)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 40, generator=g)
    x[:, :16] = float("-inf")  # the whole first block
    t = torch.tensor([20, 39, 17])
    for reduction in ("mean", "none"):
        (out, gr), (ref, g_ref) = _both_paths(
            lambda a, b, r=reduction: losskit.cross_entropy(a, b, reduction=r), x, t
        )
        assert torch.isfinite(out).all()
        close(out, ref)
        close(gr[0], g_ref[0])
    student = torch.randn(3, 40, generator=g)
    for fn in (losskit.distillation_kl_div, lambda s, t: losskit.jsd(s, t, beta=0.3)):
        for s_masked in (False, True):
            s = student.clone()
            if s_masked:
                s[:, :16] = float("-inf")
            (out, gr), (ref, g_ref) = _both_paths(fn, s, x)
            assert torch.isfinite(out) and torch.isfinite(gr[0]).all()
            close(out, ref)
            close(gr[0], g_ref[0])


def test_jsd_with_the_same_classes_masked_in_both_has_a_finite_gradient(kernels):
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 7, generator=g), torch.randn(2, 7, generator=g)
    s[:, ::3] = t[:, ::3] = float("-inf")
    keep = [1, 2, 4, 5]
    for path in ("always", "never"):
        with use_kernels(path):
            sl = leaf(s)
            loss = losskit.jsd(sl, t)
            loss.backward()
            kept = leaf(s[:, keep])
            loss_kept = losskit.jsd(kept, t[:, keep])  # the masked classes dropped
            loss_kept.backward()
        close(loss, loss_kept)
        close(sl.grad[:, keep], kept.grad)
        assert (sl.grad[:, ::3] == 0).all()


def test_inplace_backward_tells_autograd_that_the_logits_changed(kernels):
    x0 = torch.randn(4, 7, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([1, 2, 3, 4])
    z_loss = losskit.cross_entropy_with_z_loss
    # exp() saved its output, which the kernel then overwrites with the gradient: autograd's
    # in-place check must fire instead of a silently wrong gradient.
    z = leaf(x0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z_loss(z.exp(), t, inplace_backward=True).backward()
    z = leaf(x0)
    out = z_loss(z * 1.0, t, inplace_backward=True, reduction="none")
    torch.autograd.grad(out.sum(), z, retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(out.sum(), z)  # a second backward would read the gradient as logits
    # Under no_grad nothing may be written: no backward can follow.
    z = leaf(x0)
    with torch.no_grad():
        z_loss(z, t, inplace_backward=True)
    assert torch.equal(z.detach(), x0)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: losskit.cross_entropy(x, torch.tensor([0, 1, 2])),
        lambda x: losskit.cross_entropy(x, torch.tensor([0, 1, 2]), reduction="none").sum(),
        lambda x: losskit.binary_cross_entropy_with_logits(x, torch.ones(3, 4)),
        lambda x: losskit.sigmoid_focal_loss(x, torch.ones(3, 4), reduction="none").sum(),
        lambda x: losskit.kl_div(x.log_softmax(1), torch.full((3, 4), 0.25)),
        lambda x: losskit.jsd(x, torch.randn(3, 4)),
    ],
)
def test_create_graph_is_a_clear_error_not_a_dropped_second_order_term(kernels, call):
    x = leaf(torch.randn(3, 4, generator=torch.Generator().manual_seed(5)))
    with pytest.raises(RuntimeError, match=r"first-order only.*create_graph=True"):
        (g,) = torch.autograd.grad(call(x * 2.0), x, create_graph=True)
        g.pow(2).sum().backward()
    with use_kernels("never"):  # the PyTorch path gives the second-order term
        (g,) = torch.autograd.grad(call(x * 2.0), x, create_graph=True)
        assert g.requires_grad


def test_no_grad_builds_no_gradient_buffer(kernels, monkeypatch):
    launched = []
    real = ce_fn._launch
    monkeypatch.setattr(ce_fn, "_launch", lambda *a, **k: launched.append(a[1]) or real(*a, **k))
    x = leaf(torch.randn(3, 5))
    with torch.no_grad():
        out = losskit.cross_entropy(x, torch.tensor([0, 1, 2]))
    assert launched == [None] and out.grad_fn is None


def test_linear_cross_entropy_with_a_transposed_weight(kernels):
    g = torch.Generator().manual_seed(6)
    x, w_t = torch.randn(5, 4, generator=g), torch.randn(4, 9, generator=g)  # (H, V) storage
    t = torch.tensor([0, 8, 3, 3, 1], dtype=torch.uint8)
    cw = torch.rand(9, generator=g) + 0.5
    for reduction in ("mean", "sum", "none"):
        xk, wk = leaf(x), leaf(w_t)
        out = losskit.linear_cross_entropy(xk, wk.t(), t, weight=cw, reduction=reduction)
        xr, wr = leaf(x), leaf(w_t)
        ref = TF.cross_entropy(xr @ wr, t.long(), weight=cw, reduction=reduction)
        close(out, ref)
        for a, b in zip(grads(out, [xk, wk]), grads(ref, [xr, wr]), strict=True):
            close(a, b)


def test_cosine_batch_hard_mining_with_a_zero_embedding(kernels):
    # Cosine distance of a zero embedding is 1 to every other row (the PyTorch path's
    # convention); the kernel once ranked it by |a - b|^2 of normalised rows, i.e. 1, not 2.
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 0.0], [0.3, 0.954]])
    labels = torch.tensor([0, 0, 1, 1])
    mined = losskit.metric.batch_hard_triplets(x, labels, metric="cosine")
    out = losskit.metric.triplet_loss(x, labels, metric="cosine", margin=0.9, reduction="none")
    with use_kernels("never"):
        ref_mined = losskit.metric.batch_hard_triplets(x, labels, metric="cosine")
        ref = losskit.metric.triplet_loss(x, labels, metric="cosine", margin=0.9, reduction="none")
    assert torch.equal(mined.negative, ref_mined.negative)
    close(out, ref)


def test_bce_kernel_keeps_tiny_losses(kernels):
    x = torch.tensor([-20.0, 20.0, -17.0])
    t = torch.tensor([0.0, 1.0, 0.0])
    out = losskit.binary_cross_entropy_with_logits(x, t, reduction="none")
    expected = TF.binary_cross_entropy_with_logits(x.double(), t.double(), reduction="none")
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=0.0)
    assert (out > 0).all()
