"""Policy-gradient losses on per-token log-probabilities: GRPO and its normalisations
(BNPO, Dr. GRPO, DAPO), with token- or sequence-level (GSPO) importance sampling."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .._checks import check_floating, check_int, check_number, check_same_device, check_tensor
from .._dispatch import Backends
from .._precision import compute_dtype
from .preference import check_choice

__all__ = ["GRPOOutput", "grpo_loss"]

GRPO_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
IMPORTANCE_LEVELS = ("token", "sequence")


class GRPOOutput(NamedTuple):
    """``loss`` and detached statistics, each a masked mean as TRL logs it.

    ``clip_ratio`` is the fraction of (token or sequence) ratios outside the trust region on the
    side where clipping binds (``clip_ratio_low``: ratio < 1 - eps with A < 0; ``clip_ratio_high``:
    ratio > 1 + eps_high with A > 0); ``kl`` the mean per-token KL estimate against the reference
    (``None`` without ``ref_logps``).
    """

    loss: torch.Tensor
    clip_ratio: torch.Tensor
    clip_ratio_low: torch.Tensor
    clip_ratio_high: torch.Tensor
    kl: torch.Tensor | None


def _masked_mean(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """TRL's ``global_masked_mean`` on one rank: per sequence when ``x`` is ``(B, 1)``."""
    if x.shape[1] == 1:
        return x.sum() / max(x.shape[0], 1)
    return (x * m).sum() / m.sum().clamp(min=1)


def _grpo_formula(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logps: torch.Tensor | None,
    beta: float,
    eps_low: float,
    eps_high: float,
    loss_type: str,
    max_len: int | None,
    level: str,
    normalizer: torch.Tensor | float | None,
) -> GRPOOutput:
    out_dtype = logps.dtype
    dtype = compute_dtype(logps.dtype)
    lp, old = logps.to(dtype), old_logps.to(dtype)
    adv = advantages.to(dtype)
    adv = adv.unsqueeze(1) if adv.dim() == 1 else adv
    m = mask.to(dtype)
    log_ratio = lp - old
    if level == "sequence":  # GSPO: the mean log-ratio over the completion, one per sequence
        log_ratio = ((log_ratio * m).sum(-1) / m.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    ratio = torch.exp(log_ratio)
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    per_token = -torch.min(ratio * adv, clipped * adv)
    kl = None
    if ref_logps is not None:
        x = ref_logps.to(dtype) - lp
        per_token_kl = torch.exp(x) - x - 1.0  # k3 estimator of KL(pi || pi_ref), >= 0
        if beta != 0.0:
            per_token = per_token + beta * per_token_kl
        kl = _masked_mean(per_token_kl.detach(), m).to(out_dtype)
    per_token = per_token * m  # (B, T), broadcast from (B, 1) at sequence level
    if loss_type == "grpo":
        per_seq = per_token.sum(-1) / m.sum(-1).clamp(min=1.0)
        total, local = per_seq.sum(), float(per_token.shape[0])
    elif loss_type == "dr_grpo":
        length = per_token.shape[1] if max_len is None else max_len
        total, local = per_token.sum(), float(per_token.shape[0] * length)
    else:  # bnpo, dapo
        total, local = per_token.sum(), m.sum().clamp(min=1.0)
    denom = local if normalizer is None else normalizer
    loss = total / denom
    with torch.no_grad():
        low = ((ratio < 1.0 - eps_low) & (adv < 0)).to(dtype)
        high = ((ratio > 1.0 + eps_high) & (adv > 0)).to(dtype)
        stats = [_masked_mean(s, m).to(out_dtype) for s in (torch.maximum(low, high), low, high)]
    return GRPOOutput(loss.to(out_dtype), *stats, kl)


_GRPO = Backends("grpo_loss", formula=_grpo_formula)


def check_grpo_options(
    beta: object,
    epsilon: object,
    epsilon_high: object,
    loss_type: object,
    max_completion_length: object,
    importance_sampling: object,
) -> tuple[float, float, float, str, int | None, str]:
    """The hyper-parameters of :func:`grpo_loss` (shared with :class:`losskit.nn.GRPOLoss`)."""
    beta = check_number("beta", beta)
    if not (0.0 <= beta < math.inf):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    eps_low = check_number("epsilon", epsilon)
    if not (0.0 <= eps_low < 1.0):
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon!r}")
    eps_high = eps_low if epsilon_high is None else check_number("epsilon_high", epsilon_high)
    if not (0.0 <= eps_high < math.inf):
        raise ValueError(f"epsilon_high must be a finite number >= 0, got {epsilon_high!r}")
    loss_type = check_choice("loss_type", loss_type, GRPO_LOSS_TYPES)
    level = check_choice("importance_sampling", importance_sampling, IMPORTANCE_LEVELS)
    if max_completion_length is not None:
        max_completion_length = check_int("max_completion_length", max_completion_length)
        if max_completion_length < 1:
            raise ValueError(
                f"max_completion_length must be None or an int >= 1, got {max_completion_length}"
            )
        if loss_type != "dr_grpo":
            raise ValueError(
                f"max_completion_length is only used by loss_type='dr_grpo', not {loss_type!r}"
            )
    return beta, eps_low, eps_high, loss_type, max_completion_length, level


def _check_normalizer(normalizer: object, like: torch.Tensor) -> torch.Tensor | float | None:
    if normalizer is None:
        return None
    if isinstance(normalizer, torch.Tensor):
        if normalizer.dim() != 0:
            raise ValueError(
                f"normalizer must be a number or a 0-D tensor, got shape {tuple(normalizer.shape)}"
            )
        check_same_device("normalizer", normalizer, like, "logps")
        return normalizer.to(compute_dtype(like.dtype))  # an int count (num_items_in_batch) too
    n = check_number("normalizer", normalizer)
    if not (0.0 < n < math.inf):
        raise ValueError(f"normalizer must be a finite number > 0, got {normalizer!r}")
    return n


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    ref_logps: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    loss_type: str = "grpo",
    max_completion_length: int | None = None,
    importance_sampling: str = "token",
    normalizer: torch.Tensor | float | None = None,
) -> GRPOOutput:
    r"""Clipped policy-gradient loss of GRPO and its variants, from per-token log-probabilities.

    With the importance ratio :math:`w_{i,t} = \exp(\log\pi_\theta - \log\pi_{old})` per token
    (``importance_sampling="token"``), or per sequence :math:`w_i = \exp\big(\frac{1}{|o_i|}
    \sum_t (\log\pi_\theta - \log\pi_{old})\big)` (``"sequence"``, GSPO), the advantage
    :math:`A_i` (or :math:`A_{i,t}`) and the mask :math:`m_{i,t}`, per token

    .. math::
        \ell_{i,t} = -\min\big(w A,\ \mathrm{clip}(w, 1-\varepsilon, 1+\varepsilon_{high}) A\big)
                     + \beta\,\big(e^{x} - x - 1\big),\quad x = \log\pi_{ref} - \log\pi_\theta

    (the KL term only when ``beta != 0``; :math:`e^x - x - 1` is the "k3" estimator of
    :math:`\mathrm{KL}(\pi_\theta\|\pi_{ref})`). The loss then normalises the masked sum:

    ===========  =================================================================  ==========================
    loss_type    loss                                                               ``normalizer`` replaces
    ===========  =================================================================  ==========================
    ``grpo``     :math:`\frac{1}{B}\sum_i \frac{\sum_t m\ell}{\max(1, \sum_t m)}`    :math:`B` (sequences)
    ``bnpo``     :math:`\frac{\sum_{i,t} m\ell}{\max(1, \sum_{i,t} m)}`              the token count
    ``dr_grpo``  :math:`\frac{\sum_{i,t} m\ell}{B \cdot L}`, :math:`L` =                 :math:`B \cdot L`
                 ``max_completion_length`` (default: ``T``)
    ``dapo``     :math:`\frac{\sum_{i,t} m\ell}{\max(1, \sum_{i,t} m)}`              the token count
    ===========  =================================================================  ==========================

    **Gradient accumulation**: pass ``normalizer`` = the count over the *whole* optimizer step
    (every micro-batch, every rank) and the micro-batch losses add up to the full-batch loss.
    TRL 1.16's training-mode normalisers, reproduced exactly with ``normalizer``:

    * ``dapo``: ``num_items_in_batch * G / (S * num_processes)`` with ``G`` the gradient
      accumulation steps and ``S`` = ``steps_per_generation`` (``num_items_in_batch`` counts the
      active tokens of the generation batch; ``S`` defaults to ``G``, giving
      ``num_items_in_batch / num_processes``; in evaluation TRL uses the latter);
    * ``grpo``/``bnpo``/``dr_grpo``: TRL divides the local loss by ``G``, i.e. ``normalizer`` =
      local count ``* G`` (:math:`B`, the token count, :math:`B L`); equal to the full-batch
      loss only when micro-batches have equal counts (``bnpo`` and ``dapo`` differ exactly there).

    Args:
        logps: ``(B, T)`` per-token log-probabilities of the sampled completions under the
            policy being trained (e.g. :func:`losskit.lm.token_logprobs`).
        old_logps: ``(B, T)``, under the policy that sampled them (``logps.detach()`` when on-policy).
        advantages: ``(B,)`` or ``(B, T)``.
        mask: ``(B, T)`` **bool**: which tokens are completion tokens (a float or int mask raises:
            ``mask * x`` with a 0/1 float mask is easy to get subtly wrong, e.g. padded with -1).
        ref_logps: ``(B, T)`` under the reference model; required when ``beta != 0``; when given
            the KL statistic is returned even for ``beta == 0``.
        beta: :math:`\beta \ge 0`, the KL coefficient (TRL's default 0.0).
        epsilon: :math:`\varepsilon \in [0, 1)`, the lower clip.
        epsilon_high: :math:`\varepsilon_{high} \ge 0`, the upper clip (DAPO's "clip-higher");
            ``None`` means ``epsilon``.
        loss_type: see the table.
        max_completion_length: :math:`L` of ``dr_grpo`` (an int >= 1; default ``T``).
        importance_sampling: ``"token"`` or ``"sequence"``.
        normalizer: a number or 0-D tensor > 0 that replaces the denominator (see above).

    Returns:
        :class:`GRPOOutput` ``(loss, clip_ratio, clip_ratio_low, clip_ratio_high, kl)``: the scalar
        loss and detached masked means (see :class:`GRPOOutput`). Dtype of ``logps`` (computed in
        float32 at least).

    Edge cases: a sequence with no active token contributes 0 (its count is clamped to 1, as TRL);
    an all-masked batch gives loss 0 with zero gradient.

    Example:
        >>> logps = (-torch.rand(4, 6)).requires_grad_()
        >>> mask = torch.ones(4, 6, dtype=torch.bool)
        >>> out = losskit.lm.grpo_loss(logps, logps.detach(), torch.randn(4), mask, loss_type="dapo")
        >>> out.loss.backward()

    References: Shao et al., "DeepSeekMath" (GRPO), 2024; Liu et al., "Understanding R1-Zero-Like
    Training" (Dr. GRPO), 2025; Yu et al., "DAPO", 2025; Zheng et al., "Group Sequence Policy
    Optimization" (GSPO), 2025. The GRPO paper's KL is the same k3 estimator and its
    normalisation is ``grpo``.

    TRL: equal to TRL 1.16's ``GRPOTrainer._compute_loss`` (checked to 1e-10 in float64 for every
    loss type, both importance-sampling levels, with and without ``beta`` and ``epsilon_high``,
    ``(B,)`` and ``(B, T)`` advantages, an empty completion; loss, gradient, clip fractions and
    KL; TRL's ``epsilon``/``epsilon_high`` are these), with these conventions:

    * ``dr_grpo``: TRL divides by its ``args.max_completion_length`` (512 by default), losskit by
      ``T`` unless ``max_completion_length`` is given: pass TRL's value to match it.
    * The mask: TRL's is an int ``completion_mask`` (times its ``tool_mask`` when present); pass
      ``(completion_mask * tool_mask).bool()``.
    * Statistics: TRL logs ``kl`` only when ``beta != 0``, losskit returns it whenever
      ``ref_logps`` is given; TRL counts the clipped tokens in float32 (its logged fractions
      differ from these by float32 rounding) and also logs per-sequence extremes
      (``clip_ratio/low_min``, ``high_max``), which are not returned here.
    * TRL warns that ``importance_sampling="sequence"`` with ``bnpo``/``dr_grpo``/``dapo`` weights
      each sequence by its length (it sums the broadcast per-sequence term over tokens); losskit
      computes the same number and does not warn.
    * Not included: TRL's ``delta`` two-sided clip, ``use_bias_correction_kl``,
      ``top_entropy_quantile`` masking, ``off_policy_mask_threshold``, the vLLM importance
      correction, the entropy bonus and the ``cispo``/``sapo``/``vespo``/``luspo`` loss types.
    """
    logps = check_floating("logps", logps)
    old_logps = check_floating("old_logps", old_logps)
    advantages = check_floating("advantages", advantages)
    mask = check_tensor("mask", mask)
    if logps.dim() != 2:
        raise ValueError(f"logps must be (B, T), got shape {tuple(logps.shape)}")
    shape = tuple(logps.shape)
    for name, t in (("old_logps", old_logps), ("mask", mask)):
        check_same_device(name, t, logps, "logps")
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have the shape of logps {shape}, got {tuple(t.shape)}")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be a bool tensor (True on completion tokens), got dtype {mask.dtype}; "
            "pass mask.bool() if it holds 0/1"
        )
    check_same_device("advantages", advantages, logps, "logps")
    if tuple(advantages.shape) not in ((shape[0],), shape):
        raise ValueError(
            f"advantages must be (B,) = ({shape[0]},) or (B, T) = {shape}, got "
            f"{tuple(advantages.shape)}"
        )
    if ref_logps is not None:
        ref_logps = check_floating("ref_logps", ref_logps)
        check_same_device("ref_logps", ref_logps, logps, "logps")
        if tuple(ref_logps.shape) != shape:
            raise ValueError(
                f"ref_logps must have the shape of logps {shape}, got {tuple(ref_logps.shape)}"
            )
    beta, eps_low, eps_high, loss_type, max_completion_length, level = check_grpo_options(
        beta, epsilon, epsilon_high, loss_type, max_completion_length, importance_sampling
    )
    if beta != 0.0 and ref_logps is None:
        raise ValueError(f"beta={beta!r} needs ref_logps (the KL term); pass them or beta=0.0")
    normalizer = _check_normalizer(normalizer, logps)
    return _GRPO(
        logps, old_logps, advantages, mask, ref_logps, beta, eps_low, eps_high, loss_type,
        max_completion_length, level, normalizer,
    )  # fmt: skip


grpo_loss.backends = _GRPO
