"""The Triton kernel of ``losskit.lm.token_logprobs``, on the CPU under ``TRITON_INTERPRET=1``.

Oracles: the NumPy reference (values, float64) and ``log_softmax(logits).gather`` with the
entropy ``-(p log p).sum()`` composed from torch's own ops (values and gradients, float64 and
float32). Small sizes: the interpreter runs each program in NumPy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kernel_helpers import leaf

import losskit
from losskit import reference as R
from losskit.lm import token_logprobs

pytest.importorskip("triton")
KF = pytest.importorskip("losskit.kernels.token_logprobs.function")

N, H, V = 7, 16, 37


def _inputs(seed: int = 0, bias: bool = False, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, H, generator=g).to(dtype)
    w = (torch.randn(V, H, generator=g) * 0.7).to(dtype)
    b = torch.randn(V, generator=g).to(dtype) if bias else None
    y = torch.randint(V, (N,), generator=g)
    y[[1, 4]] = -100  # ignored positions
    return x, w, b, y


def _oracle(x, w, b, y, *, logit_scale=1.0, softcap=None, temperature=1.0):
    """Unfused ``log_softmax(logits).gather`` and entropy, 0 at ignored positions."""
    v = logit_scale * torch.nn.functional.linear(x, w, b)
    if softcap is not None:
        v = softcap * torch.tanh(v / softcap)
    logp_all = torch.log_softmax(v / temperature, dim=-1)
    keep = y != -100
    safe = torch.where(keep, y, 0)
    logp = logp_all.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    ent = -(logp_all.exp() * logp_all).sum(-1)
    return torch.where(keep, logp, 0.0), torch.where(keep, ent, 0.0)


def _kernel_call(*args, **kwargs):
    with losskit.use_backend("kernel"):
        return token_logprobs(*args, return_entropy=True, **kwargs)


def _upstream(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


OPTIONS = {
    "plain": {},
    "softcap+temperature+scale": {"softcap": 2.0, "temperature": 0.7, "logit_scale": 1.5},
    "temperature": {"temperature": 1.3},
    "softcap": {"softcap": 5.0},
}
# (rows per chunk, vocabulary tile): one chunk and one tile; several of each (V = 37 = 4 * 8 + 5).
TILINGS = {"one-tile": (None, None), "chunks+tiles": (3, 8)}


@pytest.fixture
def tiling(request, monkeypatch):
    rows, block = TILINGS[request.param]
    monkeypatch.setattr(KF, "FORCE_ROWS", rows)
    monkeypatch.setattr(KF, "FORCE_BLOCK", block)


@pytest.mark.parametrize("tiling", list(TILINGS), indirect=True)
@pytest.mark.parametrize("opts", list(OPTIONS), ids=str)
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_values_and_gradients_match_unfused_oracle(kernels, tiling, opts, bias):
    kw = OPTIONS[opts]
    x, w, b, y = _inputs(seed=1, bias=bias)
    ins = [leaf(x), leaf(w)] + ([leaf(b)] if bias else [])
    logp, ent = _kernel_call(ins[0], ins[1], y, lm_head_bias=ins[2] if bias else None, **kw)
    assert logp.dtype == ent.dtype == torch.float32
    assert any("TokenLogprobsKernel" in type(n).__name__ for n in _graph(logp))

    ref_ins = [leaf(t.double()) for t in ins]
    r_logp, r_ent = _oracle(*ref_ins[:2], ref_ins[2] if bias else None, y, **kw)
    torch.testing.assert_close(logp.double(), r_logp, rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(ent.double(), r_ent, rtol=1e-5, atol=2e-6)
    assert (logp[[1, 4]] == 0).all() and (ent[[1, 4]] == 0).all()

    # The NumPy reference, independently of torch.
    np_logp, np_ent = R.token_logprobs(
        x.double().numpy(), w.double().numpy(), y.numpy(),
        lm_head_bias=None if b is None else b.double().numpy(), return_entropy=True, **kw,
    )  # fmt: skip
    np.testing.assert_allclose(logp.detach().double().numpy(), np_logp, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(ent.detach().double().numpy(), np_ent, rtol=1e-5, atol=2e-6)

    g1, g2 = _upstream(N, 3), _upstream(N, 4)
    ours = torch.autograd.grad((logp.double() * g1).sum() + (ent.double() * g2).sum(), ins)
    theirs = torch.autograd.grad((r_logp * g1).sum() + (r_ent * g2).sum(), ref_ins)
    for a, c in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.double(), c, rtol=1e-4, atol=1e-5)


def _graph(out: torch.Tensor):
    stack, seen = [out.grad_fn], []
    while stack:
        node = stack.pop()
        if node is not None:
            seen.append(node)
            stack.extend(n for n, _ in node.next_functions)
    return seen


def test_float32_agrees_with_log_softmax_gather_to_1e_6(kernels, monkeypatch):
    """The issue's target: the fused values equal float32 ``log_softmax(logits).gather``."""
    monkeypatch.setattr(KF, "FORCE_BLOCK", 16)
    x, w, _, y = _inputs(seed=2)
    for kw in ({}, {"softcap": 3.0, "temperature": 0.8}):
        logp, ent = _kernel_call(x, w, y, **kw)
        r_logp, r_ent = _oracle(x, w, None, y, **kw)
        torch.testing.assert_close(logp, r_logp, rtol=0, atol=1e-6)
        torch.testing.assert_close(ent, r_ent, rtol=0, atol=1e-6)


def test_logprob_only_shift_and_frozen_head(kernels):
    """No entropy, the causal shift, a weight that does not require grad (no weight gradient)."""
    g = torch.Generator().manual_seed(5)
    x = leaf(torch.randn(2, 4, H, generator=g))
    w = torch.randn(V, H, generator=g) * 0.7
    y = torch.randint(V, (2, 4), generator=g)
    y[0, 2] = -100
    with losskit.use_backend("kernel"):
        logp = token_logprobs(x, w, y, shift=True, temperature=0.9)
    assert logp.shape == (2, 3)
    xr = leaf(x.detach().double())
    r_logp, _ = _oracle(xr[:, :-1], w.double(), None, y[:, 1:], temperature=0.9)
    torch.testing.assert_close(logp.double(), r_logp, rtol=1e-5, atol=2e-6)
    up = _upstream(6, 9).view(2, 3)
    (gx,) = torch.autograd.grad((logp.double() * up).sum(), [x])
    (rx,) = torch.autograd.grad((r_logp * up).sum(), [xr])
    torch.testing.assert_close(gx.double(), rx, rtol=1e-4, atol=1e-5)
    assert gx[:, -1].abs().max() == 0  # the last position predicts nothing


def test_all_ignored_and_empty(kernels):
    x, w, _, y = _inputs(seed=6)
    xs, ws = leaf(x), leaf(w)
    logp, ent = _kernel_call(xs, ws, torch.full_like(y, -100))
    assert (logp == 0).all() and (ent == 0).all()
    gx, gw = torch.autograd.grad(logp.sum() + ent.sum(), [xs, ws])
    assert gx.abs().max() == 0 and gw.abs().max() == 0
    xe, we = leaf(torch.randn(0, H)), leaf(w)
    logp, ent = _kernel_call(xe, we, torch.zeros(0, dtype=torch.long))
    assert logp.shape == ent.shape == (0,)
    gx, gw = torch.autograd.grad(logp.sum() + ent.sum(), [xe, we])
    assert gx.shape == (0, H) and gw.abs().max() == 0


def test_bfloat16_matches_pytorch_path(kernels):
    x, w, b, y = _inputs(seed=7, bias=True, dtype=torch.bfloat16)
    ins = [leaf(x), leaf(w), leaf(b)]
    logp, ent = _kernel_call(ins[0], ins[1], y, lm_head_bias=ins[2], softcap=4.0)
    assert logp.dtype == torch.float32
    ref_ins = [leaf(t) for t in ins]
    with losskit.use_backend("formula"):
        r_logp, r_ent = token_logprobs(
            ref_ins[0], ref_ins[1], y, lm_head_bias=ref_ins[2], softcap=4.0, return_entropy=True
        )
    torch.testing.assert_close(logp, r_logp, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(ent, r_ent, rtol=2e-2, atol=2e-2)
    up = (_upstream(N, 1).float(), _upstream(N, 2).float())
    ours = torch.autograd.grad((logp * up[0]).sum() + (ent * up[1]).sum(), ins)
    theirs = torch.autograd.grad((r_logp * up[0]).sum() + (r_ent * up[1]).sum(), ref_ins)
    for a, c in zip(ours, theirs, strict=True):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a.float(), c.float(), rtol=5e-2, atol=5e-2)


def test_float64_is_refused_with_the_reason(kernels):
    x, w, _, y = _inputs()
    with pytest.raises(losskit.BackendUnsupportedError, match=r"token_logprobs.*float64"):
        _kernel_call(x.double(), w.double(), y)


def test_no_double_backward(kernels):
    x, w, _, y = _inputs()
    xs = leaf(x)
    logp, _ = _kernel_call(xs, w, y)
    with pytest.raises(RuntimeError, match=r"token_logprobs: .*first-order only"):
        torch.autograd.grad(logp.sum(), [xs], create_graph=True)


def test_autocast_fixes_the_logits_dtype_for_both_passes(kernels):
    """Under CPU autocast the logits are bfloat16 in the forward and the recomputing backward;
    values and gradients stay float32 and close to the float32 oracle."""
    x, w, _, y = _inputs(seed=8)
    ins = [leaf(x), leaf(w)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logp, ent = _kernel_call(*ins, y)
    r_ins = [leaf(x), leaf(w)]
    r_logp, r_ent = _oracle(*r_ins, None, y)
    torch.testing.assert_close(logp, r_logp, rtol=5e-2, atol=5e-2)
    torch.testing.assert_close(ent, r_ent, rtol=5e-2, atol=5e-2)
    ours = torch.autograd.grad(logp.sum() + ent.sum(), ins)
    theirs = torch.autograd.grad(r_logp.sum() + r_ent.sum(), r_ins)
    for a, c in zip(ours, theirs, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, c, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("backend", ["kernel", "formula"])
def test_minus_inf_bias_masks_vocabulary_entries(kernels, backend):
    """A ``-inf`` bias removes entries from the softmax: finite values and gradients, equal to
    the softmax over the remaining entries (the oracle drops those rows of the weight)."""
    x, w, _, y = _inputs(seed=9)
    allowed = torch.arange(V) % 3 != 0
    b = torch.where(allowed, 0.0, -torch.inf)
    y = torch.where((y < 0) | allowed[y.clamp(min=0)], y, 1)  # targets among the allowed ones
    ins = [leaf(x), leaf(w)]
    with losskit.use_backend(backend):
        logp, ent = token_logprobs(*ins, y, lm_head_bias=b, return_entropy=True, chunk_size=7)
    r_ins = [leaf(x.double()), leaf(w.double())]
    sub_y = torch.where(y < 0, y, torch.searchsorted(torch.arange(V)[allowed], y))
    r_logp, r_ent = _oracle(r_ins[0], r_ins[1][allowed], None, sub_y)
    torch.testing.assert_close(logp.double(), r_logp, rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(ent.double(), r_ent, rtol=1e-5, atol=2e-6)
    ours = torch.autograd.grad(logp.sum() + 0.3 * ent.sum(), ins)
    theirs = torch.autograd.grad(r_logp.sum() + 0.3 * r_ent.sum(), r_ins)
    for a, c in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.double(), c, rtol=1e-4, atol=1e-5)
