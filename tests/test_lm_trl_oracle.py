"""losskit's post-training losses against Hugging Face TRL's own loss code on the same tensors.

The oracle is TRL's trainer code itself, not a re-derivation: the unbound methods
``DPOTrainer._compute_loss``, ``GRPOTrainer._compute_loss``, ``KTOTrainer._compute_loss`` and the
experimental ``CPOTrainer``/``ORPOTrainer.get_batch_loss_metrics`` are called with a
``SimpleNamespace`` standing in for ``self`` (the attributes each reads, set as its ``__init__``
would from a config) and a stub model whose forward returns given per-token log-probabilities, so
every line between the log-probabilities and the loss, the logged rewards, clip fractions and KL
is TRL's. Compared in float64 to 1e-10, with the gradients reaching the per-token log-probabilities.
Where TRL's convention differs (IPO length normalisation and its rewards, ``dr_grpo``'s default
length, the gradient-accumulation normalisers, ORPO's float32 cast) the mapping is the one the
docstrings of ``losskit.lm.preference``/``policy`` document.

Optional: needs ``pip install --no-deps trl==1.16.0 datasets accelerate`` (and their small
dependencies; see the ``trl-peers`` extra). Skipped when TRL or its trainer modules do not import,
or when the installed TRL is not the version these stand-ins were written against.
"""

from __future__ import annotations

import importlib
import types
from collections import defaultdict

import pytest
import torch

import losskit.lm as L

trl = pytest.importorskip("trl", exc_type=ImportError)

TRL_VERSION = "1.16.0"  # the stand-ins below set the attributes this version's trainers read
if trl.__version__ != TRL_VERSION:
    pytest.skip(
        f"written against TRL {TRL_VERSION}'s trainer internals, found {trl.__version__}",
        allow_module_level=True,
    )


def _trainer(module: str, name: str):
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as e:  # the trainers import datasets, accelerate, transformers...
        pytest.skip(f"{module} does not import ({e})", allow_module_level=True)


DPOTrainer = _trainer("trl.trainer.dpo_trainer", "DPOTrainer")
GRPOTrainer = _trainer("trl.trainer.grpo_trainer", "GRPOTrainer")

F64 = torch.float64


def _close(actual, expected, tol=1e-10):
    torch.testing.assert_close(
        torch.as_tensor(actual, dtype=F64), torch.as_tensor(expected, dtype=F64), rtol=tol, atol=tol
    )


class _Accelerator:
    """One process: gathers and reductions are the identity."""

    device = torch.device("cpu")
    num_processes = 1
    sync_gradients = True

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def _metrics():
    return defaultdict(lambda: defaultdict(list))


def _token_logps(g, rows, T, lengths):
    """Per-token log-probabilities (rows, T), 0 after each row's length (TRL's fused head gives 0
    at label -100), as a leaf; and the bool mask."""
    mask = torch.arange(T) < torch.as_tensor(lengths).unsqueeze(1)
    lp = -3.0 * torch.rand(rows, T, generator=g, dtype=F64)
    return (lp * mask).requires_grad_(), mask


# ---------------------------------------------------------------- DPO


def _trl_dpo(per_token, mask, ref_c, ref_r, *, beta, loss_type, label_smoothing=0.0):
    """``DPOTrainer._compute_loss`` on a batch [chosen; rejected] whose forward is ``per_token``."""
    n2, T = per_token.shape
    zeros = torch.zeros(n2, T, dtype=F64)
    outputs = types.SimpleNamespace(
        log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool(), aux_loss=None
    )
    # column 0 is the prompt; the completion mask (unshifted) has the shifted mask's token count
    completion_mask = torch.cat([torch.zeros(n2, 1, dtype=torch.long), mask.long()], 1)
    inputs = {
        "input_ids": torch.zeros_like(completion_mask),
        "attention_mask": torch.ones_like(completion_mask),
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_c,
        "ref_rejected_logps": ref_r,
    }
    stub = types.SimpleNamespace(
        model=types.SimpleNamespace(training=False),
        accelerator=_Accelerator(),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=label_smoothing,
        use_weighting=False,
        _metrics=_metrics(),
        _total_train_tokens=0,
    )
    loss = DPOTrainer._compute_loss(stub, lambda **kw: outputs, inputs, return_outputs=False)
    return loss, stub._metrics["eval"]


def _dpo_batch(seed, B=6, T=9):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (2 * B,), generator=g)
    per_token, mask = _token_logps(g, 2 * B, T, lengths)
    seq = per_token.detach().sum(1)
    # the reference within a few nats of the policy, so beta * delta spans the hinge/sigmoid knees
    ref = seq + 4.0 * torch.randn(2 * B, generator=g, dtype=F64)
    return per_token, mask, ref[:B], ref[B:]


DPO_CASES = [
    *[(t, b, 0.0) for t in L.preference.DPO_LOSS_TYPES for b in (0.1, 0.6)],
    ("robust", 0.1, 0.2),
    ("robust", 0.6, 0.45),
]


@pytest.mark.parametrize(
    ("loss_type", "beta", "label_smoothing"),
    DPO_CASES,
    ids=[f"{t}-b{b}-ls{e}" for t, b, e in DPO_CASES],
)
def test_dpo_equals_trl_dpo_trainer(loss_type, beta, label_smoothing):
    per_token, mask, ref_c, ref_r = _dpo_batch(
        seed=DPO_CASES.index((loss_type, beta, label_smoothing))
    )
    B = ref_c.shape[0]
    loss_trl, logged = _trl_dpo(
        per_token,
        mask,
        ref_c,
        ref_r,
        beta=beta,
        loss_type=loss_type,
        label_smoothing=label_smoothing,
    )
    (grad_trl,) = torch.autograd.grad(loss_trl, per_token)

    # losskit's inputs: sequence log-probabilities (masked sums) ...
    seq = (per_token * mask).sum(1)
    pc, pr = seq[:B], seq[B:]
    rc, rr = ref_c, ref_r
    n = mask.sum(1).to(F64)
    if loss_type == "ipo":  # ... or, for TRL's length-normalised IPO, per-token means
        pc, pr, rc, rr = pc / n[:B], pr / n[B:], rc / n[:B], rr / n[B:]
    out = L.dpo_loss(
        pc, pr, rc, rr, beta=beta, loss_type=loss_type, label_smoothing=label_smoothing
    )
    (grad,) = torch.autograd.grad(out.loss, per_token)

    _close(out.loss, loss_trl)
    # TRL sums every position; its fused head gives a constant 0 (no gradient) at label -100
    _close(grad, grad_trl * mask)
    # TRL logs its rewards on the summed log-ratios, also for ipo
    scale = (n[:B], n[B:]) if loss_type == "ipo" else (1.0, 1.0)
    chosen, rejected = out.chosen_rewards * scale[0], out.rejected_rewards * scale[1]
    _close(chosen.mean(), logged["rewards/chosen"][0])
    _close(rejected.mean(), logged["rewards/rejected"][0])
    _close((chosen - rejected).mean(), logged["rewards/margins"][0])


# ---------------------------------------------------------------- GRPO


def _trl_grpo(logps, inputs, *, mode="eval", accum=1, steps_per_generation=1, **opts):
    """``GRPOTrainer._compute_loss`` with the policy forward returning ``logps``."""
    eps = opts.get("epsilon", 0.2)
    stub = types.SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None),
        aux_loss_enabled=False,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level=opts.get("importance_sampling", "token"),
        beta=opts.get("beta", 0.0),
        epsilon_low=eps,
        epsilon_high=eps if opts.get("epsilon_high") is None else opts["epsilon_high"],
        loss_type=opts.get("loss_type", "grpo"),
        max_completion_length=opts.get("max_completion_length"),
        use_vllm=False,
        _entropy_bonus_enabled=False,
        model=types.SimpleNamespace(training=mode == "train"),
        current_gradient_accumulation_steps=accum,
        accelerator=_Accelerator(),
        args=types.SimpleNamespace(
            use_bias_correction_kl=False, delta=None, steps_per_generation=steps_per_generation
        ),
        _metrics=_metrics(),
    )
    loss = GRPOTrainer._compute_loss(stub, None, inputs)
    return loss, stub._metrics[mode]


def _grpo_batch(seed, B=6, T=8, token_advantages=False):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[2] = 0  # a sequence with no completion token
    mask = torch.arange(T) < lengths.unsqueeze(1)
    old = -3.0 * torch.rand(B, T, generator=g, dtype=F64)
    # ratios exp(+-0.6) cross both clip bounds
    logps = (old + 0.3 * torch.randn(B, T, generator=g, dtype=F64)).requires_grad_()
    ref = old + 0.3 * torch.randn(B, T, generator=g, dtype=F64)
    shape = (B, T) if token_advantages else (B,)
    adv = torch.randn(shape, generator=g, dtype=F64)
    inputs = {
        "prompt_ids": torch.zeros(B, 3, dtype=torch.long),
        "prompt_mask": torch.ones(B, 3, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long),
        "completion_mask": mask.long(),  # TRL's mask is an int tensor; losskit takes bool
        "advantages": adv,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": mask.sum(),
    }
    return logps, inputs, mask


GRPO_CASES = [
    (t, lvl, beta, eh)
    for t in L.policy.GRPO_LOSS_TYPES
    for lvl in L.policy.IMPORTANCE_LEVELS
    for beta in (0.0, 0.04)
    for eh in (None, 0.28)
]


@pytest.mark.parametrize(
    ("loss_type", "level", "beta", "epsilon_high"),
    GRPO_CASES,
    ids=[f"{t}-{lvl}-b{b}-eh{eh}" for t, lvl, b, eh in GRPO_CASES],
)
@pytest.mark.parametrize("token_advantages", [False, True], ids=["adv_B", "adv_BT"])
def test_grpo_equals_trl_grpo_trainer(loss_type, level, beta, epsilon_high, token_advantages):
    logps, inputs, mask = _grpo_batch(
        seed=len(loss_type) + 7 * token_advantages, token_advantages=token_advantages
    )
    T = mask.shape[1]
    opts = dict(
        loss_type=loss_type,
        importance_sampling=level,
        beta=beta,
        epsilon=0.2,
        epsilon_high=epsilon_high,
    )
    # TRL's dr_grpo divides by its max_completion_length (config default 512); losskit's default is T
    trl_opts = dict(opts, max_completion_length=T)
    loss_trl, logged = _trl_grpo(logps, inputs, **trl_opts)
    (grad_trl,) = torch.autograd.grad(loss_trl, logps)

    out = L.grpo_loss(
        logps, inputs["old_per_token_logps"], inputs["advantages"], mask,
        ref_logps=inputs["ref_per_token_logps"] if beta else None, **opts,
    )  # fmt: skip
    (grad,) = torch.autograd.grad(out.loss, logps)

    _close(out.loss, loss_trl)
    _close(grad, grad_trl)
    # TRL counts the clipped tokens in float32 (``is_clipped.float()``): equal to float32 rounding
    _close(out.clip_ratio_low, logged["clip_ratio/low_mean"][0], 1e-7)
    _close(out.clip_ratio_high, logged["clip_ratio/high_mean"][0], 1e-7)
    _close(out.clip_ratio, logged["clip_ratio/region_mean"][0], 1e-7)
    if beta:
        _close(out.kl, logged["kl"][0])
    else:
        assert out.kl is None and "kl" not in logged


def test_grpo_beta_zero_with_ref_logps_is_trl_without_the_kl_term():
    logps, inputs, mask = _grpo_batch(seed=3)
    loss_trl, _ = _trl_grpo(logps, inputs, beta=0.0)
    out = L.grpo_loss(logps, inputs["old_per_token_logps"], inputs["advantages"], mask,
                      ref_logps=inputs["ref_per_token_logps"])  # fmt: skip
    _close(out.loss, loss_trl)
    assert out.kl is not None  # losskit reports the KL whenever it can; TRL only when beta != 0


@pytest.mark.parametrize("level", L.policy.IMPORTANCE_LEVELS)
def test_grpo_dr_grpo_max_completion_length_equals_trl(level):
    logps, inputs, mask = _grpo_batch(seed=5)
    opts = dict(loss_type="dr_grpo", importance_sampling=level, max_completion_length=13)
    loss_trl, _ = _trl_grpo(logps, inputs, **opts)
    out = L.grpo_loss(logps, inputs["old_per_token_logps"], inputs["advantages"], mask, **opts)
    _close(out.loss, loss_trl)


@pytest.mark.parametrize("loss_type", L.policy.GRPO_LOSS_TYPES)
@pytest.mark.parametrize(("accum", "steps_per_generation"), [(3, 3), (2, 4)])
def test_grpo_train_mode_gradient_accumulation_normalisers_map_to_trl(
    loss_type, accum, steps_per_generation
):
    """TRL's train-mode scaling, reproduced with ``normalizer`` as the docstring says."""
    logps, inputs, mask = _grpo_batch(seed=11)
    B, T = mask.shape
    # num_items_in_batch counts the active tokens of the whole generation batch
    inputs["num_items_in_batch"] = mask.sum() * steps_per_generation + 5
    opts = dict(loss_type=loss_type, max_completion_length=T if loss_type == "dr_grpo" else None)
    loss_trl, _ = _trl_grpo(
        logps, inputs, mode="train", accum=accum, steps_per_generation=steps_per_generation, **opts
    )
    normalizer = {
        "grpo": B * accum,
        "bnpo": mask.sum() * accum,
        "dr_grpo": B * T * accum,
        "dapo": inputs["num_items_in_batch"] * accum / steps_per_generation,  # / num_processes
    }[loss_type]
    out = L.grpo_loss(logps, inputs["old_per_token_logps"], inputs["advantages"], mask,
                      normalizer=normalizer, **opts)  # fmt: skip
    _close(out.loss, loss_trl)


# ---------------------------------------------------------------- KTO


def _trl_kto(
    trainer, per_token, kl_per_token, labels, ref_logps, ref_kl_logps, *, loss_type, **attrs
):
    rows, T = per_token.shape
    zeros = torch.zeros(rows, T, dtype=F64)

    def out(lp):
        return types.SimpleNamespace(log_probs=lp, entropy=zeros, mean_logits=zeros, aux_loss=None)

    ids = torch.zeros(rows, T + 1, dtype=torch.long)
    kl_ids = torch.zeros(rows, T + 1, dtype=torch.long)
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "completion_mask": torch.ones_like(ids),
        "KL_input_ids": kl_ids,
        "KL_attention_mask": torch.ones_like(kl_ids),
        "KL_completion_mask": torch.ones_like(kl_ids),
        "label": labels,
        "ref_logps": ref_logps,
        "ref_KL_logps": ref_kl_logps,
    }

    def model(**kw):  # the KL forward reads the mismatched pairs
        return out(kl_per_token if kw["input_ids"] is kl_ids else per_token)

    stub = types.SimpleNamespace(
        model=types.SimpleNamespace(training=False),
        accelerator=_Accelerator(),
        aux_loss_enabled=False,
        calculate_KL=loss_type == "kto",  # as KTOTrainer.__init__ sets it
        precompute_ref_logps=True,
        loss_type=loss_type,
        _metrics=_metrics(),
        _total_train_tokens=0,
        **attrs,
    )
    stub._compute_kl_logps = types.MethodType(trainer._compute_kl_logps, stub)
    loss = trainer._compute_loss(stub, model, inputs, return_outputs=False)
    return loss, stub._metrics["eval"]


@pytest.fixture(scope="module")
def kto_trainer():
    return _trainer("trl.trainer.kto_trainer", "KTOTrainer")


KTO_CASES = [
    ("kto", 0.1, 1.0, 1.0, "mixed"),
    ("kto", 0.5, 1.33, 0.7, "mixed"),
    ("kto", 0.1, 1.0, 1.0, "all_desirable"),
    ("kto", 0.1, 1.0, 1.0, "negative_kl"),  # TRL clamps the KL estimate at 0
    ("apo_zero_unpaired", 0.1, 1.0, 1.0, "mixed"),
    ("apo_zero_unpaired", 0.5, 0.8, 1.2, "mixed"),
]


@pytest.mark.parametrize(("loss_type", "beta", "w_d", "w_u", "labels"), KTO_CASES,
                         ids=["-".join(map(str, c)) for c in KTO_CASES])  # fmt: skip
def test_kto_equals_trl_kto_trainer(kto_trainer, loss_type, beta, w_d, w_u, labels):
    g = torch.Generator().manual_seed(len(labels) + int(10 * beta))
    B, T = 8, 6
    per_token = (-3.0 * torch.rand(B, T, generator=g, dtype=F64)).requires_grad_()
    kl_per_token = -3.0 * torch.rand(B, T, generator=g, dtype=F64)
    seq = per_token.detach().sum(1)
    ref = seq + 3.0 * torch.randn(B, generator=g, dtype=F64)
    # TRL's KL estimate mean(KL_logps - ref_KL_logps): about 0.5, or -4 (clamped to 0)
    shift = 4.0 if labels == "negative_kl" else -0.5
    ref_kl = kl_per_token.sum(1) + shift + torch.randn(B, generator=g, dtype=F64)
    desirable = torch.rand(B, generator=g) < 0.5
    desirable[:2] = torch.tensor([True, False])
    if labels == "all_desirable":
        desirable[:] = True
    loss_trl, logged = _trl_kto(kto_trainer, per_token, kl_per_token, desirable, ref, ref_kl, loss_type=loss_type,
                                beta=beta, desirable_weight=w_d, undesirable_weight=w_u)  # fmt: skip
    (grad_trl,) = torch.autograd.grad(loss_trl, per_token)

    # the KL baseline as losskit's docstring says to compute it (TRL's estimate on one rank)
    z0 = (kl_per_token.sum(1) - ref_kl).mean().clamp(min=0) if loss_type == "kto" else None
    out = L.kto_loss(per_token.sum(1), ref, desirable, z0, beta=beta, loss_type=loss_type,
                     desirable_weight=w_d, undesirable_weight=w_u)  # fmt: skip
    (grad,) = torch.autograd.grad(out.loss, per_token)

    _close(out.loss, loss_trl)
    _close(grad, grad_trl)
    _close(out.rewards[desirable].mean(), logged["rewards/chosen"][0])
    if (~desirable).any():
        _close(out.rewards[~desirable].mean(), logged["rewards/rejected"][0])
    if loss_type == "kto":
        _close(z0, logged["kl"][0])


# ---------------------------------------------------------------- CPO, SimPO, ORPO (trl.experimental)


@pytest.fixture(scope="module")
def cpo_trainer():
    return _trainer("trl.experimental.cpo", "CPOTrainer")


@pytest.fixture(scope="module")
def orpo_trainer():
    return _trainer("trl.experimental.orpo", "ORPOTrainer")


def _pairs(seed, B=7, scale=20.0):
    g = torch.Generator().manual_seed(seed)
    pc = (-scale * torch.rand(B, generator=g, dtype=F64) - 0.05).requires_grad_()
    pr = (-scale * torch.rand(B, generator=g, dtype=F64) - 0.05).requires_grad_()
    nll = (2.0 * torch.rand((), generator=g, dtype=F64)).requires_grad_()
    return pc, pr, nll


def _trl_batch_loss(trainer, loss_method, pc, pr, nll, **attrs):
    """``get_batch_loss_metrics`` with the concatenated forward returning the given values."""
    stub = types.SimpleNamespace(
        accelerator=_Accelerator(),
        aux_loss_enabled=False,
        concatenated_forward=lambda model, batch: (pc, pr, pc.detach(), pr.detach(), nll),
        **attrs,
    )
    stub.__dict__[loss_method] = types.MethodType(getattr(trainer, loss_method), stub)
    return trainer.get_batch_loss_metrics(stub, None, {}, train_eval="train")


CPO_CASES = [
    ("sigmoid", 0.1, 0.0, 1.0),
    ("sigmoid", 0.3, 0.15, 0.5),
    ("hinge", 0.1, 0.0, 1.0),
    ("ipo", 0.2, 0.0, 1.0),
    ("simpo", 2.0, 0.0, 1.0),
    ("simpo", 2.5, 0.1, 0.0),
]


@pytest.mark.parametrize(("loss_type", "beta", "eps", "alpha"), CPO_CASES,
                         ids=["-".join(map(str, c)) for c in CPO_CASES])  # fmt: skip
def test_cpo_equals_trl_cpo_trainer(cpo_trainer, loss_type, beta, eps, alpha):
    mean_logps = loss_type in ("ipo", "simpo")  # TRL averages over tokens for these two
    pc, pr, nll = _pairs(seed=len(loss_type), scale=3.0 if mean_logps else 20.0)
    attrs = dict(alpha=0.0, beta=beta, loss_type=loss_type, label_smoothing=eps, simpo_gamma=0.7,
                 cpo_alpha=alpha)  # fmt: skip
    loss_trl, logged = _trl_batch_loss(cpo_trainer, "cpo_loss", pc, pr, nll, **attrs)
    grads_trl = torch.autograd.grad(loss_trl, (pc, pr, nll))
    out = L.cpo_loss(pc, pr, nll, beta=beta, loss_type=loss_type, label_smoothing=eps,
                     simpo_gamma=0.7, cpo_alpha=alpha)  # fmt: skip
    grads = torch.autograd.grad(out.loss, (pc, pr, nll), allow_unused=True)
    _close(out.loss, loss_trl)
    for a, e in zip(grads, grads_trl, strict=True):
        _close(torch.zeros(()) if a is None else a, e)
    _close(out.chosen_rewards.mean(), logged["rewards/chosen"])
    _close(out.rejected_rewards.mean(), logged["rewards/rejected"])


@pytest.mark.parametrize(("beta", "gamma", "eps"), [(2.0, 0.5, 0.0), (2.5, 1.4, 0.2)])
def test_simpo_equals_trl_cpo_trainer_simpo_without_nll(cpo_trainer, beta, gamma, eps):
    pc, pr, nll = _pairs(seed=9, scale=3.0)
    attrs = dict(alpha=0.0, beta=beta, loss_type="simpo", label_smoothing=eps, simpo_gamma=gamma,
                 cpo_alpha=0.0)  # fmt: skip
    loss_trl, logged = _trl_batch_loss(cpo_trainer, "cpo_loss", pc, pr, nll, **attrs)
    out = L.simpo_loss(pc, pr, beta=beta, gamma=gamma, label_smoothing=eps)
    _close(out.loss, loss_trl)
    _close(torch.autograd.grad(out.loss, pc)[0], torch.autograd.grad(loss_trl, pc)[0])
    _close(out.chosen_rewards.mean(), logged["rewards/chosen"])


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_dpo_label_smoothed_sigmoid_is_trl_cdpo_formula(cpo_trainer, eps):
    """TRL 1.16's DPOTrainer ignores label_smoothing for ``sigmoid``; the conservative-DPO form
    losskit keeps is TRL's ``cpo_loss`` sigmoid row evaluated on the reference log-ratios."""
    pc, pr, _ = _pairs(seed=4)
    g = torch.Generator().manual_seed(8)
    rc = pc.detach() + 3.0 * torch.randn(pc.shape, generator=g, dtype=F64)
    rr = pr.detach() + 3.0 * torch.randn(pr.shape, generator=g, dtype=F64)
    stub = types.SimpleNamespace(alpha=0.0, beta=0.2, loss_type="sigmoid", label_smoothing=eps,
                                 accelerator=_Accelerator())  # fmt: skip
    losses, _, _ = cpo_trainer.cpo_loss(stub, pc - rc, pr - rr)
    out = L.dpo_loss(pc, pr, rc, rr, beta=0.2, label_smoothing=eps, reduction="none")
    _close(out.loss, losses)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_orpo_equals_trl_orpo_trainer(orpo_trainer, beta):
    pc, pr, nll = _pairs(seed=int(beta * 10), scale=2.0)
    with torch.no_grad():  # float32-representable values: TRL's odds_ratio_loss casts to float32
        pc.copy_(pc.float().double())
        pr.copy_(pr.float().double())
        pc[0] = -1e-4  # near log p = 0, where log(1 - e^a) needs expm1
        pr[1] = -3e-5
    loss_trl, logged = _trl_batch_loss(orpo_trainer, "odds_ratio_loss", pc, pr, nll, beta=beta)
    grads_trl = torch.autograd.grad(loss_trl, (pc, pr, nll))
    out = L.orpo_loss(pc, pr, nll, beta=beta)
    grads = torch.autograd.grad(out.loss, (pc, pr, nll))
    # losskit computes in float64 here, TRL in float32: equal to float32 rounding
    tol = 1e-6
    _close(out.loss, loss_trl, tol)
    for a, e in zip(grads, grads_trl, strict=True):
        _close(a, e, tol)
    _close(out.log_odds_ratio.mean(), logged["log_odds_ratio"], tol)
    _close(out.log_odds_chosen.mean(), logged["log_odds_chosen"], tol)
    _close(out.chosen_rewards.mean(), logged["rewards/chosen"], tol)
    # losskit on float32 inputs computes in float32, as TRL
    out32 = L.orpo_loss(pc.detach().float(), pr.detach().float(), nll.detach().float(), beta=beta)
    assert out32.loss.dtype == torch.float32
    _close(out32.loss, loss_trl, tol)
