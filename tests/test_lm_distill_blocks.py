"""The blocked pass of ``linear_distillation_loss`` / ``topk_distillation_loss`` at every block size.

The pass cuts the rows into blocks (sized by a byte budget, ``distill._BLOCK_BYTES``) for the
matrix products and each block into sub-blocks (``distill._SUB_BYTES``) for the in-place
elementwise work. Oracles: the NumPy references (values) and autograd through the loss written
out plainly in torch on materialised logits (gradients), in float64. Also: which gradients the
pass computes (frozen student weight, ``no_grad``, a teacher that requires grad).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import losskit.lm as L
from losskit import reference as R
from losskit.lm import distill as D

F64 = torch.float64
N, HS, HT, V = 11, 5, 4, 13
# (block bytes, sub-block bytes) at V=13 float64 (104 bytes a row per buffer): one row per block
# and sub-block; 3-row blocks of 2-row sub-blocks (a ragged last one); the default budget (one
# quarter of the rows a block, MIN_CHUNKS) with one sub-block a block.
BUDGETS = [(1, 1), (2 * 3 * 104 + 4 * 2 * 104, 2 * 104), (None, 1 << 20)]


@pytest.fixture(params=BUDGETS, ids=["1row", "3rows_sub2", "default"])
def budget(request, monkeypatch):
    block, sub = request.param
    monkeypatch.setattr(D, "_BLOCK_BYTES", block)
    monkeypatch.setattr(D, "_SUB_BYTES", sub)
    return request.param


def _inputs(seed: int, n: int = N):
    g = torch.Generator().manual_seed(seed)
    hs = torch.randn(n, HS, generator=g, dtype=F64, requires_grad=True)
    ws = (torch.randn(V, HS, generator=g, dtype=F64) * 0.9).requires_grad_()
    ht = torch.randn(n, HT, generator=g, dtype=F64)
    wt = torch.randn(V, HT, generator=g, dtype=F64) * 0.9
    y = torch.randint(V, (n,), generator=g)
    y[1::4] = -100
    return hs, ws, ht, wt, y


def _oracle(hs, ws, ht, wt, y, divergence, beta, temperature, hard_weight, reduction):
    """The loss written out plainly on materialised logits (autograd gives the gradients)."""
    ls = torch.log_softmax(hs @ ws.T / temperature, -1)
    lt = torch.log_softmax(ht @ wt.T / temperature, -1)
    s, t = ls.exp(), lt.exp()
    if divergence == "kl":
        soft = (t * (lt - ls)).sum(-1)
    elif divergence == "reverse_kl":
        soft = (s * (ls - lt)).sum(-1)
    elif divergence == "tvd":
        soft = 0.5 * (s - t).abs().sum(-1)
    else:
        lm = torch.log(beta * t + (1 - beta) * s)
        soft = beta * (t * (lt - lm)).sum(-1) + (1 - beta) * (s * (ls - lm)).sum(-1)
    keep = y != -100
    hard = -torch.log_softmax(hs @ ws.T, -1).gather(1, torch.where(keep, y, 0)[:, None])[:, 0]
    rows = torch.where(keep, (1 - hard_weight) * soft + hard_weight * hard, 0.0)
    if reduction == "none":
        return rows
    return rows.sum() / keep.sum() if reduction == "mean" else rows.sum()


CASES = [
    ("kl", 1.0, 0.0, "mean"),
    ("kl", 2.0, 0.3, "none"),
    ("reverse_kl", 0.7, 0.0, "sum"),
    ("reverse_kl", 1.0, 0.5, "mean"),
    ("jsd", 1.5, 0.0, "mean"),
    ("jsd", 1.0, 0.25, "none"),
    ("tvd", 1.0, 0.0, "none"),
    ("tvd", 2.0, 0.4, "sum"),
]


@pytest.mark.parametrize(("divergence", "temperature", "hard_weight", "reduction"), CASES)
def test_every_block_size_gives_the_reference_values_and_gradients(
    budget, divergence, temperature, hard_weight, reduction
):
    hs, ws, ht, wt, y = _inputs(1)
    kw = dict(divergence=divergence, beta=0.3, temperature=temperature, hard_weight=hard_weight,
              reduction=reduction)  # fmt: skip
    got = L.linear_distillation_loss(hs, ws, ht, wt, labels=y, **kw)
    ref = R.linear_distillation_loss(hs.detach().numpy(), ws.detach().numpy(), ht.numpy(),
                                     wt.numpy(), labels=y.numpy(), **kw)  # fmt: skip
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-10, atol=1e-12)
    up = torch.rand(got.shape, dtype=F64) + 0.5  # a non-uniform upstream gradient for "none"
    grads = torch.autograd.grad(got, (hs, ws), up)
    hs2, ws2 = hs.detach().requires_grad_(), ws.detach().requires_grad_()
    want = torch.autograd.grad(_oracle(hs2, ws2, ht, wt, y, **kw), (hs2, ws2), up)
    for a, b in zip(grads, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("divergence", ["kl", "jsd"])
def test_float32_block_sizes_agree_with_the_float64_oracle(budget, divergence):
    hs, ws, ht, wt, y = _inputs(2)
    f32 = [t.detach().float().requires_grad_(i < 2) for i, t in enumerate((hs, ws, ht, wt))]
    got = L.linear_distillation_loss(*f32, labels=y, divergence=divergence)
    got.backward()
    ref = _oracle(hs, ws, ht, wt, y, divergence, 0.5, 1.0, 0.0, "mean")
    ref.backward()
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(f32[0].grad.double(), hs.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(f32[1].grad.double(), ws.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("divergence", ["kl", "reverse_kl", "jsd", "tvd"])
def test_topk_with_a_student_weight_at_every_block_size(budget, divergence):
    hs, ws, ht, wt, y = _inputs(3)
    top = torch.log_softmax(ht @ wt.T, -1).topk(4)
    got = L.topk_distillation_loss(hs, top.values, top.indices, student_weight=ws, labels=y,
                                   divergence=divergence, beta=0.4, temperature=1.3)  # fmt: skip
    ref = R.topk_distillation_loss((hs @ ws.T).detach().numpy(), top.values.numpy(),
                                   top.indices.numpy(), labels=y.numpy(), divergence=divergence,
                                   beta=0.4, temperature=1.3)  # fmt: skip
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-10)
    # Gradients: the same loss through the logits path (no weight), chained by hand through W.
    z = (hs @ ws.T).detach().requires_grad_()
    L.topk_distillation_loss(z, top.values, top.indices, labels=y, divergence=divergence,
                             beta=0.4, temperature=1.3).backward()  # fmt: skip
    gh, gw = torch.autograd.grad(got, (hs, ws))
    torch.testing.assert_close(gh, z.grad @ ws.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gw, z.grad.T @ hs.detach(), rtol=1e-10, atol=1e-12)


def _record_wants(monkeypatch) -> list[tuple[bool, bool]]:
    """The gradients each pass over the blocks was asked for."""
    seen: list[tuple[bool, bool]] = []
    real = D._pass

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append(tuple(g is not None for g in out[1:]))
        return out

    monkeypatch.setattr(D, "_pass", spy)
    return seen


def test_frozen_student_weight_skips_the_weight_gradient(monkeypatch):
    hs, ws, ht, wt, y = _inputs(4)
    seen = _record_wants(monkeypatch)
    loss = L.linear_distillation_loss(hs, ws.detach(), ht, wt, labels=y, divergence="jsd")
    (gh,) = torch.autograd.grad(loss, hs)
    assert seen == [(True, False)]  # one pass (the forward), no weight gradient made
    hs2 = hs.detach().requires_grad_()
    ref = _oracle(hs2, ws.detach(), ht, wt, y, "jsd", 0.5, 1.0, 0.0, "mean")
    torch.testing.assert_close(gh, torch.autograd.grad(ref, hs2)[0], rtol=1e-10, atol=1e-12)


def test_no_grad_makes_no_gradient_buffers(monkeypatch):
    hs, ws, ht, wt, y = _inputs(5)
    seen = _record_wants(monkeypatch)
    with torch.no_grad():
        loss = L.linear_distillation_loss(hs, ws, ht, wt, labels=y)
    assert seen == [(False, False)] and not loss.requires_grad


def test_a_teacher_that_requires_grad_is_a_constant():
    hs, ws, ht, wt, y = _inputs(6)
    ht, wt = ht.requires_grad_(), wt.requires_grad_()
    loss = L.linear_distillation_loss(hs, ws, ht, wt, labels=y, divergence="reverse_kl")
    loss.backward()
    assert ht.grad is None and wt.grad is None and hs.grad is not None


def test_reduction_none_and_a_second_backward_recompute_the_same_gradients(monkeypatch):
    hs, ws, ht, wt, y = _inputs(7)
    monkeypatch.setattr(D, "_BLOCK_BYTES", 1)  # one row a block
    loss = L.linear_distillation_loss(hs, ws, ht, wt, labels=y, divergence="tvd")
    first = torch.autograd.grad(loss, (hs, ws), retain_graph=True)  # made in the forward
    second = torch.autograd.grad(loss, (hs, ws))  # recomputed block by block
    rows = L.linear_distillation_loss(hs, ws, ht, wt, labels=y, divergence="tvd", reduction="none")
    third = torch.autograd.grad(rows.sum() / (y != -100).sum(), (hs, ws))
    for a, b, c in zip(first, second, third, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-14)


def test_every_position_ignored_gives_nan_mean_and_zero_gradients():
    hs, ws, ht, wt, y = _inputs(8)
    loss = L.linear_distillation_loss(hs, ws, ht, wt, labels=torch.full_like(y, -100))
    loss.backward()
    assert math.isnan(loss.item())
    assert not hs.grad.any() and not ws.grad.any()


def test_empty_batch_sums_to_zero_with_zero_weight_gradient():
    hs, ws, ht, wt, _ = _inputs(9, n=0)
    loss = L.linear_distillation_loss(hs, ws, ht, wt, reduction="sum")
    loss.backward()
    assert loss.item() == 0.0 and hs.grad.shape == (0, HS) and not ws.grad.any()


def test_block_rows_fit_the_byte_budget(monkeypatch):
    monkeypatch.setattr(D, "_BLOCK_BYTES", None)
    monkeypatch.setattr(D, "_SUB_BYTES", 1 << 20)
    # CPU default: 32 MiB for both float32 logits blocks and two 1 MiB scratch buffers.
    rows, sub = D._block_rows(4096, 32768, (torch.float32, torch.float32), 2, torch.device("cpu"))
    assert (rows, sub) == (120, 8)
    assert rows * 32768 * 4 * 2 + 2 * sub * 32768 * 4 <= 32 << 20
    # A bfloat16 student's product is copied into the float32 block: 2 bytes more a logit.
    rows, _ = D._block_rows(4096, 32768, (torch.bfloat16, torch.float32), 2, torch.device("cpu"))
    assert rows == 30 * (1 << 20) // (32768 * 10)
    # Never fewer than MIN_CHUNKS blocks, never less than a row.
    assert D._block_rows(8, 10, (F64, F64), 2, torch.device("cpu")) == (2, 2)
    monkeypatch.setattr(D, "_BLOCK_BYTES", 1)
    assert D._block_rows(8, 10, (F64, F64), 2, torch.device("cpu")) == (1, 1)
