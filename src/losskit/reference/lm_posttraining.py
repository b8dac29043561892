"""NumPy references of the post-training losses of :mod:`losskit.lm` (float64, no torch).

Each mirrors its functional one to one and returns what the registry's loss-only view returns:
the (reduced) loss, or for :func:`token_logprobs` the log-probabilities (plus the entropies when
``return_entropy``). The formulas are written from the papers / TRL's trainers, plainly, with
loops where that is clearer.
"""

from __future__ import annotations

import math

import numpy as np

from ._common import as_float, log_sigmoid, log_softmax, reduce, sigmoid

__all__ = [
    "cpo_loss",
    "dpo_loss",
    "grpo_loss",
    "kto_loss",
    "linear_distillation_loss",
    "orpo_loss",
    "simpo_loss",
    "token_logprobs",
    "topk_distillation_loss",
]


# ---------------------------------------------------------------- preference losses


def dpo_loss(
    policy_chosen_logps,
    policy_rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    *,
    beta=0.1,
    loss_type="sigmoid",
    label_smoothing=0.0,
    reduction="mean",
):
    c = as_float(policy_chosen_logps) - as_float(ref_chosen_logps)
    r = as_float(policy_rejected_logps) - as_float(ref_rejected_logps)
    d = c - r
    e = label_smoothing
    if loss_type == "sigmoid":
        loss = -(1 - e) * log_sigmoid(beta * d) - e * log_sigmoid(-beta * d)
    elif loss_type == "hinge":
        loss = np.maximum(0.0, 1.0 - beta * d)
    elif loss_type == "ipo":
        loss = (d - 1.0 / (2.0 * beta)) ** 2
    elif loss_type == "robust":
        loss = (-(1 - e) * log_sigmoid(beta * d) + e * log_sigmoid(-beta * d)) / (1 - 2 * e)
    elif loss_type == "bco_pair":
        loss = -log_sigmoid(beta * c) - log_sigmoid(-beta * r)
    elif loss_type == "apo_zero":
        loss = (1.0 - sigmoid(beta * c)) + sigmoid(beta * r)
    elif loss_type == "apo_down":
        loss = sigmoid(beta * c) + (1.0 - sigmoid(beta * d))
    else:
        raise ValueError(loss_type)
    return reduce(loss, reduction)


def cpo_loss(
    policy_chosen_logps,
    policy_rejected_logps,
    chosen_nll=None,
    *,
    beta=0.1,
    loss_type="sigmoid",
    label_smoothing=0.0,
    simpo_gamma=0.5,
    cpo_alpha=1.0,
    reduction="mean",
):
    d = as_float(policy_chosen_logps) - as_float(policy_rejected_logps)
    e = label_smoothing
    if loss_type in ("sigmoid", "simpo"):
        z = beta * d - (simpo_gamma if loss_type == "simpo" else 0.0)
        loss = -(1 - e) * log_sigmoid(z) - e * log_sigmoid(-z)
    elif loss_type == "hinge":
        loss = np.maximum(0.0, 1.0 - beta * d)
    else:
        loss = (d - 1.0 / (2.0 * beta)) ** 2
    if chosen_nll is not None:
        loss = loss + cpo_alpha * as_float(chosen_nll)
    return reduce(loss, reduction)


def simpo_loss(
    policy_chosen_logps,
    policy_rejected_logps,
    *,
    beta=2.0,
    gamma=0.5,
    label_smoothing=0.0,
    reduction="mean",
):
    z = beta * (as_float(policy_chosen_logps) - as_float(policy_rejected_logps)) - gamma
    e = label_smoothing
    return reduce(-(1 - e) * log_sigmoid(z) - e * log_sigmoid(-z), reduction)


def orpo_loss(policy_chosen_logps, policy_rejected_logps, chosen_nll=None, *, beta=0.1,
              reduction="mean"):  # fmt: skip
    a, b = as_float(policy_chosen_logps), as_float(policy_rejected_logps)
    # odds(p) = p / (1 - p); log(1 - e^a) = log(-expm1(a)) is exact enough for every a < 0 in
    # float64 (no cancellation in expm1).
    log_odds = (a - b) - (np.log(-np.expm1(a)) - np.log(-np.expm1(b)))
    loss = -beta * log_sigmoid(log_odds)
    if chosen_nll is not None:
        loss = loss + as_float(chosen_nll)
    return reduce(loss, reduction)


def kto_loss(
    policy_logps,
    ref_logps,
    desirable,
    kl=None,
    *,
    beta=0.1,
    desirable_weight=1.0,
    undesirable_weight=1.0,
    loss_type="kto",
    reduction="mean",
):
    rho = as_float(policy_logps) - as_float(ref_logps)
    z0 = 0.0 if kl is None else float(as_float(kl))
    good = np.asarray(desirable, dtype=bool)
    loss = np.empty_like(rho)
    for i in np.ndindex(rho.shape):
        if loss_type == "kto":
            v = sigmoid(beta * (rho[i] - z0)) if good[i] else sigmoid(beta * (z0 - rho[i]))
            loss[i] = (desirable_weight if good[i] else undesirable_weight) * (1.0 - v)
        elif good[i]:
            loss[i] = desirable_weight * (1.0 - sigmoid(beta * rho[i]))
        else:
            loss[i] = undesirable_weight * sigmoid(beta * rho[i])
    return reduce(loss, reduction)


# ---------------------------------------------------------------- GRPO


def grpo_loss(
    logps,
    old_logps,
    advantages,
    mask,
    *,
    ref_logps=None,
    beta=0.0,
    epsilon=0.2,
    epsilon_high=None,
    loss_type="grpo",
    max_completion_length=None,
    importance_sampling="token",
    normalizer=None,
):
    """Token by token, as TRL's ``GRPOTrainer._compute_loss``; returns the loss only."""
    lp, old = as_float(logps), as_float(old_logps)
    m = np.asarray(mask, dtype=bool)
    adv = as_float(advantages)
    n_seq, n_tok = lp.shape
    eps_lo, eps_hi = epsilon, epsilon if epsilon_high is None else epsilon_high
    per_token = np.zeros_like(lp)
    for b in range(n_seq):
        if importance_sampling == "sequence":
            count = max(int(m[b].sum()), 1)
            seq = sum(lp[b, t] - old[b, t] for t in range(n_tok) if m[b, t]) / count
        for t in range(n_tok):
            a = adv[b] if adv.ndim == 1 else adv[b, t]
            w = math.exp(seq if importance_sampling == "sequence" else lp[b, t] - old[b, t])
            clipped = min(max(w, 1 - eps_lo), 1 + eps_hi)
            value = -min(w * a, clipped * a)
            if beta != 0.0:
                x = ref_logps[b, t] - lp[b, t]
                value += beta * (math.exp(x) - x - 1.0)
            per_token[b, t] = value
    total = sum(per_token[b, t] for b in range(n_seq) for t in range(n_tok) if m[b, t])
    if loss_type == "grpo":
        per_seq = [
            sum(per_token[b, t] for t in range(n_tok) if m[b, t]) / max(int(m[b].sum()), 1)
            for b in range(n_seq)
        ]
        denom = n_seq if normalizer is None else normalizer
        return np.asarray(sum(per_seq) / denom)
    if loss_type == "dr_grpo":
        length = n_tok if max_completion_length is None else max_completion_length
        denom = n_seq * length if normalizer is None else normalizer
        return np.asarray(total / denom)
    denom = max(int(m.sum()), 1) if normalizer is None else normalizer  # bnpo, dapo
    return np.asarray(total / denom)


# ---------------------------------------------------------------- token log-probabilities


def _logits(h, w, bias, temperature, softcap, logit_scale):
    z = as_float(h) @ as_float(w).T
    if bias is not None:
        z = z + as_float(bias)
    z = z * logit_scale
    if softcap is not None:
        z = softcap * np.tanh(z / softcap)
    return z / temperature


def token_logprobs(
    hidden_states,
    lm_head_weight,
    tokens,
    *,
    lm_head_bias=None,
    temperature=1.0,
    softcap=None,
    logit_scale=1.0,
    return_entropy=False,
    ignore_index=-100,
    shift=False,
):
    """``log_softmax(logits)[token]`` (0 where ignored), and ``-sum p log p`` per row."""
    h = as_float(hidden_states)
    y = np.asarray(tokens)
    if shift:
        h, y = h[..., :-1, :], y[..., 1:]
    lead = y.shape
    h2, y1 = h.reshape(-1, h.shape[-1]), y.reshape(-1)
    z = _logits(h2, lm_head_weight, lm_head_bias, temperature, softcap, logit_scale)
    logp = log_softmax(z, axis=1) if z.size else z
    out = np.zeros(len(y1))
    ent = np.zeros(len(y1))
    for i, t in enumerate(y1):
        if t == ignore_index:
            continue
        out[i] = logp[i, t]
        ent[i] = -np.sum(np.exp(logp[i]) * logp[i])
    if return_entropy:
        return out.reshape(lead), ent.reshape(lead)
    return out.reshape(lead)


# ---------------------------------------------------------------- distillation


def _divergence(log_s, log_t, divergence, beta):
    """One row's divergence between student and teacher log-probabilities (natural log)."""
    s, t = np.exp(log_s), np.exp(log_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _divergence_terms(s, t, log_s, log_t, divergence, beta)


def _divergence_terms(s, t, log_s, log_t, divergence, beta):
    if divergence == "kl":  # KL(teacher || student)
        return float(np.sum(np.where(t > 0, t * (log_t - log_s), 0.0)))
    if divergence == "reverse_kl":  # KL(student || teacher)
        return float(np.sum(np.where(s > 0, s * (log_s - log_t), 0.0)))
    if divergence == "tvd":
        return float(0.5 * np.sum(np.abs(s - t)))
    m = beta * t + (1 - beta) * s  # jsd, TRL's generalised form
    kl_t = np.sum(np.where(t > 0, t * (log_t - np.log(m)), 0.0))
    kl_s = np.sum(np.where(s > 0, s * (log_s - np.log(m)), 0.0))
    return float(beta * kl_t + (1 - beta) * kl_s)


def _reduce_rows(rows, keep, reduction):
    if reduction == "none":
        return rows
    total = float(np.sum(rows[keep]))
    if reduction == "sum":
        return np.asarray(total)
    return np.asarray(total / keep.sum()) if keep.sum() else np.asarray(np.nan)


def linear_distillation_loss(
    student_hidden,
    student_weight,
    teacher_hidden,
    teacher_weight,
    *,
    divergence="kl",
    beta=0.5,
    temperature=1.0,
    ignore_index=-100,
    labels=None,
    hard_weight=0.0,
    reduction="mean",
):
    hs, ht = as_float(student_hidden), as_float(teacher_hidden)
    lead = hs.shape[:-1]
    hs, ht = hs.reshape(-1, hs.shape[-1]), ht.reshape(-1, ht.shape[-1])
    zs = hs @ as_float(student_weight).T
    zt = ht @ as_float(teacher_weight).T
    y = None if labels is None else np.asarray(labels).reshape(-1)
    keep = np.ones(len(hs), dtype=bool) if y is None else y != ignore_index
    rows = np.zeros(len(hs))
    for i in range(len(hs)):
        if not keep[i]:
            continue
        soft = _divergence(
            log_softmax(zs[i] / temperature, 0), log_softmax(zt[i] / temperature, 0),
            divergence, beta,
        )  # fmt: skip
        hard = -log_softmax(zs[i], 0)[y[i]] if hard_weight > 0 else 0.0
        rows[i] = (1 - hard_weight) * soft + hard_weight * hard
    return _reduce_rows(rows.reshape(lead), keep.reshape(lead), reduction)


def topk_distillation_loss(
    student_logits,
    teacher_topk_logprobs,
    teacher_topk_ids,
    *,
    divergence="kl",
    beta=0.5,
    temperature=1.0,
    ignore_index=-100,
    labels=None,
    reduction="mean",
):
    """Both distributions over k + 1 buckets: the teacher's top-k tokens and "the rest".

    The teacher's log-probabilities are used as given (temperature applies to the student only);
    its tail bucket holds ``1 - sum(exp(topk))``, the student's the softmax mass of every other
    token.
    """
    z = as_float(student_logits)
    lead = z.shape[:-1]
    z = z.reshape(-1, z.shape[-1])
    tl = as_float(teacher_topk_logprobs).reshape(len(z), -1)
    ids = np.asarray(teacher_topk_ids).reshape(len(z), -1)
    y = None if labels is None else np.asarray(labels).reshape(-1)
    keep = np.ones(len(z), dtype=bool) if y is None else y != ignore_index
    rows = np.zeros(len(z))
    for i in range(len(z)):
        if not keep[i]:
            continue
        ls = log_softmax(z[i] / temperature, 0)
        rest = np.ones(len(ls), dtype=bool)
        rest[ids[i]] = False
        s_probs = np.append(np.exp(ls[ids[i]]), np.sum(np.exp(ls[rest])))
        t_mass = np.exp(tl[i])
        t_rest = max(1.0 - t_mass.sum(), 0.0) if rest.any() else 0.0  # no tail when k = V
        t_probs = np.append(t_mass, t_rest)
        with np.errstate(divide="ignore"):
            rows[i] = _divergence(np.log(s_probs), np.log(t_probs), divergence, beta)
    return _reduce_rows(rows.reshape(lead), keep.reshape(lead), reduction)
