"""Post-training losses of losskit.lm beyond the generic registry suite (which checks values against
the NumPy references to 1e-10 in float64, finite-difference gradients, Modules and bad inputs).

Oracles here: torch's own ``log_softmax(logits).gather`` and autograd through it (for the fused
``token_logprobs``), the NumPy references, and statistics written out token by token in NumPy.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import losskit
import losskit.lm as L
from losskit import reference as R

F64 = torch.float64


def _unfused(h, w, y, b=None, *, temperature=1.0, softcap=None, logit_scale=1.0):
    """The oracle: materialised logits, torch's log_softmax, gather and the entropy."""
    z = F.linear(h, w, b).float() * logit_scale
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    logp = torch.log_softmax(z / temperature, -1)
    keep = y != -100
    tok = logp.gather(-1, torch.where(keep, y, 0).unsqueeze(-1)).squeeze(-1)
    ent = -(logp.exp() * logp).sum(-1)
    return torch.where(keep, tok, 0.0), torch.where(keep, ent, 0.0)


# ---------------------------------------------------------------- token_logprobs


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"softcap": 30.0, "temperature": 0.7},
        {"softcap": 2.0, "temperature": 1.6, "logit_scale": 0.5, "bias": True},
    ],
    ids=["plain", "softcap30_T0.7", "softcap2_T1.6_scale_bias"],
)
def test_token_logprobs_equals_log_softmax_gather_in_float32(opts):
    opts = dict(opts)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 17, 32, generator=g, requires_grad=True)
    w = (torch.randn(1000, 32, generator=g) * 0.3).requires_grad_()
    b = (torch.randn(1000, generator=g) * 0.1).requires_grad_() if opts.pop("bias", False) else None
    y = torch.randint(1000, (3, 17), generator=g)
    y[0, :4] = -100
    logp, ent = L.token_logprobs(h, w, y, lm_head_bias=b, return_entropy=True, chunk_size=96,
                                 **opts)  # fmt: skip
    ref_logp, ref_ent = _unfused(h, w, y, b, **opts)
    assert logp.dtype == torch.float32 and logp.shape == (3, 17)
    # Both are float32 computations; they differ by the rounding of their summation orders (a few
    # ulps: values here reach |log p| ~ 10, where one ulp is ~1e-6).
    torch.testing.assert_close(logp, ref_logp, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ent, ref_ent, rtol=1e-6, atol=1e-6)
    up1, up2 = torch.randn(3, 17, generator=g), torch.randn(3, 17, generator=g)
    params = [t for t in (h, w, b) if t is not None]
    ours = torch.autograd.grad((logp * up1).sum() + (ent * up2).sum(), params)
    # Gradients against float64: the float32 unfused gradient is itself up to ~5e-6 off here
    # (summed over 51 rows), more than the 1e-6 two float32 computations could be held to.
    p64 = [t.detach().double().requires_grad_() for t in params]
    r64 = _unfused(p64[0], p64[1], y, p64[2] if b is not None else None, **opts)
    theirs = torch.autograd.grad((r64[0] * up1.double()).sum() + (r64[1] * up2.double()).sum(), p64)
    for a, e in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-5)


def test_token_logprobs_shift_drops_the_last_position_and_the_first_token():
    g = torch.Generator().manual_seed(1)
    h, w = torch.randn(2, 6, 8, generator=g), torch.randn(40, 8, generator=g)
    y = torch.randint(40, (2, 6), generator=g)
    shifted = L.token_logprobs(h, w, y, shift=True)
    assert shifted.shape == (2, 5)
    torch.testing.assert_close(shifted, L.token_logprobs(h[:, :-1], w, y[:, 1:]))


def test_token_logprobs_only_the_logprob_output_used_gives_its_gradient():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(9, 8, generator=g, dtype=F64, requires_grad=True)
    w = torch.randn(30, 8, generator=g, dtype=F64, requires_grad=True)
    y = torch.randint(30, (9,), generator=g)
    logp, _ = L.token_logprobs(h, w, y, return_entropy=True, chunk_size=7)
    ours = torch.autograd.grad(logp.sum(), (h, w))
    theirs = torch.autograd.grad(torch.log_softmax(F.linear(h, w), -1).gather(
        1, y.unsqueeze(1)).sum(), (h, w))  # fmt: skip
    for a, e in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_token_logprobs_of_half_inputs_is_float32_and_close_to_the_float64_reference(dtype):
    g = torch.Generator().manual_seed(3)
    h, w = torch.randn(4, 5, 16, generator=g).to(dtype), torch.randn(64, 16, generator=g).to(dtype)
    y = torch.randint(64, (4, 5), generator=g)
    logp, ent = L.token_logprobs(h.requires_grad_(), w, y, return_entropy=True, softcap=10.0)
    assert logp.dtype == ent.dtype == torch.float32
    ref_logp, ref_ent = R.token_logprobs(
        h.detach().double().numpy(), w.double().numpy(), y.numpy(), return_entropy=True,
        softcap=10.0,
    )  # fmt: skip
    np.testing.assert_allclose(logp.detach().numpy(), ref_logp, rtol=0, atol=2e-2 * 16)
    np.testing.assert_allclose(ent.detach().numpy(), ref_ent, rtol=0, atol=2e-2 * 16)
    (logp.sum() + ent.sum()).backward()
    assert h.grad.dtype == dtype and torch.isfinite(h.grad.float()).all()


def test_token_logprobs_of_no_position_is_empty_with_zero_gradients():
    h = torch.zeros(0, 8, requires_grad=True)
    w = torch.randn(20, 8, requires_grad=True)
    logp, ent = L.token_logprobs(h, w, torch.zeros(0, dtype=torch.long), return_entropy=True)
    assert logp.shape == ent.shape == (0,)
    (logp.sum() + ent.sum()).backward()
    assert h.grad.shape == (0, 8) and not w.grad.any()


def test_token_logprobs_kernel_backend_needs_cuda_or_the_interpreter():
    # The Triton kernel itself is tested in tests/kernels/test_token_logprobs_kernel.py.
    h, w, y = torch.randn(2, 4), torch.randn(5, 4), torch.tensor([0, 1])
    with losskit.use_backend("formula"):
        torch.testing.assert_close(L.token_logprobs(h, w, y), _unfused(h, w, y)[0])
    assert "kernel" in L.token_logprobs.backends.names
    if os.environ.get("TRITON_INTERPRET", "0") != "0":
        pytest.skip("the interpreter runs the kernel on CPU tensors")
    with (
        losskit.use_backend("kernel"),
        pytest.raises(
            losskit.BackendUnsupportedError,
            match=r"token_logprobs: the 'kernel' backend cannot run this call: tensors on cpu",
        ),
    ):
        L.token_logprobs(h, w, y)


# ---------------------------------------------------------------- preference losses


def test_dpo_returns_rewards_as_trl_logs_them_detached():
    pc = torch.tensor([-10.0, -20.0], dtype=F64, requires_grad=True)
    pr, rc, rr = (
        torch.tensor(v, dtype=F64) for v in ([-12.0, -19.0], [-11.0, -20.5], [-12.5, -18.0])
    )
    out = L.dpo_loss(pc, pr, rc, rr, beta=0.2, reduction="none")
    torch.testing.assert_close(out.chosen_rewards, 0.2 * (pc.detach() - rc))
    torch.testing.assert_close(out.rejected_rewards, 0.2 * (pr - rr))
    assert not out.chosen_rewards.requires_grad and out.loss.requires_grad
    np.testing.assert_allclose(
        out.loss.detach().numpy(), R.dpo_loss(pc.detach().numpy(), pr.numpy(), rc.numpy(),
                                              rr.numpy(), beta=0.2, reduction="none"),
        rtol=1e-12,
    )  # fmt: skip


def test_orpo_statistics_match_the_odds_ratio_written_out():
    a = np.array([-0.3, -1.7, -2e-4])
    b = np.array([-0.9, -0.2, -3.0])
    out = L.orpo_loss(torch.tensor(a), torch.tensor(b), beta=0.1, reduction="none")
    odds = lambda lp: np.exp(lp) / (1 - np.exp(lp))  # noqa: E731
    log_odds = np.log(odds(a) / odds(b))
    np.testing.assert_allclose(out.log_odds_chosen.numpy(), log_odds, rtol=1e-9)
    np.testing.assert_allclose(out.log_odds_ratio.numpy(), -np.log1p(np.exp(-log_odds)), rtol=1e-9)


def test_modules_return_the_functionals_named_tuples():
    a, b, c, d = (torch.full((3,), v) for v in (-5.0, -6.0, -5.5, -5.2))
    for got, expected in zip(
        losskit.nn.DPOLoss(beta=0.3)(a, b, c, d), L.dpo_loss(a, b, c, d, beta=0.3), strict=True
    ):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    out = losskit.nn.ORPOLoss()(a / 10, b / 10)
    assert isinstance(out, L.ORPOOutput) and out.log_odds_ratio.shape == (3,)


# ---------------------------------------------------------------- GRPO


def _grpo_batch(seed=0, b=4, t=7):
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(b, t, generator=g, dtype=F64) * 3
    old = logps + 0.3 * torch.randn(b, t, generator=g, dtype=F64)
    ref = logps + 0.2 * torch.randn(b, t, generator=g, dtype=F64)
    mask = torch.rand(b, t, generator=g) < 0.7
    mask[:, 0] = True
    return logps, old, ref, torch.randn(b, generator=g, dtype=F64), mask


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_grpo_gradient_accumulation_with_the_normalizer_equals_the_full_batch(loss_type):
    logps, old, ref, adv, mask = _grpo_batch()
    kw = {"loss_type": loss_type, "ref_logps": ref, "beta": 0.05}
    full_lp = logps.clone().requires_grad_()
    full = L.grpo_loss(full_lp, old, adv, mask, **kw).loss
    (g_full,) = torch.autograd.grad(full, full_lp)
    count = {"grpo": 4.0, "dr_grpo": 4.0 * 7, "bnpo": float(mask.sum()), "dapo": float(mask.sum())}
    acc_lp = logps.clone().requires_grad_()
    total = sum(
        L.grpo_loss(acc_lp[s], old[s], adv[s], mask[s], **{**kw, "ref_logps": ref[s]},
                    normalizer=count[loss_type]).loss
        for s in (slice(0, 1), slice(1, 4))  # unequal micro-batches
    )  # fmt: skip
    (g_acc,) = torch.autograd.grad(total, acc_lp)
    torch.testing.assert_close(total, full, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g_acc, g_full, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_grpo_clip_and_kl_statistics_as_trl_logs_them(level):
    logps, old, ref, adv, mask = _grpo_batch(seed=4)
    out = L.grpo_loss(logps, old, adv, mask, ref_logps=ref, epsilon=0.2, epsilon_high=0.28,
                      importance_sampling=level)  # fmt: skip
    lp, o, rf, a, m = (t.numpy() for t in (logps, old, ref, adv, mask))
    lows, highs, kls = [], [], []
    for i in range(lp.shape[0]):
        seq_ratio = np.exp(
            sum(lp[i, t] - o[i, t] for t in range(lp.shape[1]) if m[i, t]) / m[i].sum()
        )
        if level == "sequence":
            lows.append(seq_ratio < 0.8 and a[i] < 0)
            highs.append(seq_ratio > 1.28 and a[i] > 0)
        for t in range(lp.shape[1]):
            if not m[i, t]:
                continue
            x = rf[i, t] - lp[i, t]
            kls.append(np.exp(x) - x - 1)
            if level == "token":
                r = np.exp(lp[i, t] - o[i, t])
                lows.append(r < 0.8 and a[i] < 0)
                highs.append(r > 1.28 and a[i] > 0)
    lows, highs = np.array(lows, float), np.array(highs, float)
    np.testing.assert_allclose(float(out.clip_ratio_low), lows.mean(), rtol=1e-12)
    np.testing.assert_allclose(float(out.clip_ratio_high), highs.mean(), rtol=1e-12)
    np.testing.assert_allclose(float(out.clip_ratio), np.maximum(lows, highs).mean(), rtol=1e-12)
    np.testing.assert_allclose(float(out.kl), np.mean(kls), rtol=1e-12)
    assert L.grpo_loss(logps, old, adv, mask).kl is None


def test_grpo_all_masked_gives_zero_loss_and_zero_gradient():
    logps, old, _, adv, mask = _grpo_batch()
    lp = logps.clone().requires_grad_()
    out = L.grpo_loss(lp, old, adv, torch.zeros_like(mask), loss_type="bnpo")
    out.loss.backward()
    assert float(out.loss.detach()) == 0.0 and not lp.grad.any()


# ---------------------------------------------------------------- distillation


def test_linear_distillation_of_bfloat16_models_is_close_to_the_float32_one():
    g = torch.Generator().manual_seed(5)
    hs, ws = torch.randn(6, 16, generator=g), torch.randn(200, 16, generator=g) * 0.3
    ht, wt = torch.randn(6, 24, generator=g), torch.randn(200, 24, generator=g) * 0.3
    full = L.linear_distillation_loss(hs, ws, ht, wt, divergence="jsd")
    half = L.linear_distillation_loss(*(t.bfloat16() for t in (hs, ws, ht, wt)), divergence="jsd")
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, rtol=5e-2, atol=5e-3)


def test_topk_distillation_with_every_token_in_the_top_k_is_the_full_divergence():
    g = torch.Generator().manual_seed(6)
    z, t = torch.randn(5, 12, generator=g, dtype=F64), torch.randn(5, 12, generator=g, dtype=F64)
    top = torch.log_softmax(t, -1).topk(12)
    got = L.topk_distillation_loss(z, top.values, top.indices, reduction="none")
    full = R.linear_distillation_loss(
        z.numpy(), np.eye(12), t.numpy(), np.eye(12), reduction="none"
    )  # the oracle: both full distributions, identity heads
    np.testing.assert_allclose(got.numpy(), full, rtol=1e-10)


# ---------------------------------------------------------------- torch.compile


def _compiled_equals_eager(fn, inputs):
    eager = fn(*inputs)
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")(*inputs)
    torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=1e-12)
    g_e = torch.autograd.grad(eager, inputs)
    g_c = torch.autograd.grad(compiled, inputs)
    for a, b in zip(g_c, g_e, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def _leaf(*shape, seed=0, high=-0.1):
    g = torch.Generator().manual_seed(seed)
    return (high - 3 * torch.rand(*shape, generator=g, dtype=F64)).requires_grad_()


def _dpo(a, b):
    ref_c, ref_r = a.detach() + 0.1, b.detach() - 0.2
    return L.dpo_loss(a, b, ref_c, ref_r, loss_type="robust", label_smoothing=0.1).loss


def _kto(a):
    good = torch.tensor([True, False, True])
    return L.kto_loss(a, a.detach() - 0.3, good, 0.1).loss


def _grpo(a):
    adv, mask = torch.tensor([1.0, -1.0], dtype=F64), torch.ones(2, 3, dtype=torch.bool)
    return L.grpo_loss(a, a.detach() + 0.1, adv, mask, loss_type="dapo").loss


def _token_logprobs(h, w):
    y = torch.tensor([[1, 2, -100], [0, 4, 3]])
    logp, ent = L.token_logprobs(h, w, y, return_entropy=True, softcap=3.0, chunk_size=2)
    return logp.sum() + ent.sum()


def _linear_distillation(h, w):
    return L.linear_distillation_loss(h, w, h.detach() * 0.5, w.detach(), divergence="tvd")


def _topk_distillation(z):
    top = torch.log(torch.tensor([[0.5, 0.2]] * 3, dtype=F64))
    return L.topk_distillation_loss(z, top, torch.tensor([[0, 3]] * 3))


_PAIR = (lambda: _leaf(4), lambda: _leaf(4, seed=1))
_COMPILE_CASES = {
    "dpo": (_dpo, _PAIR),
    "simpo": (lambda a, b: L.simpo_loss(a, b).loss, _PAIR),
    "cpo": (lambda a, b: L.cpo_loss(a, b, -a.detach()).loss, _PAIR),
    "orpo": (lambda a, b: L.orpo_loss(a, b).loss, _PAIR),
    "kto": (_kto, (lambda: _leaf(3),)),
    "grpo": (_grpo, (lambda: _leaf(2, 3),)),
    "token_logprobs": (_token_logprobs, (lambda: _leaf(2, 3, 4), lambda: _leaf(5, 4, seed=1))),
    "linear_distillation": (_linear_distillation, (lambda: _leaf(3, 4), lambda: _leaf(6, 4))),
    "topk_distillation": (_topk_distillation, (lambda: _leaf(3, 6),)),
}


@pytest.mark.parametrize("name", list(_COMPILE_CASES))
def test_compiles_whole_forward_and_backward_equal_to_eager(name):
    torch._dynamo.reset()
    fn, makers = _COMPILE_CASES[name]
    _compiled_equals_eager(fn, tuple(make() for make in makers))
