"""Module forms of the post-training losses of :mod:`losskit.lm` (hyper-parameters checked in
``__init__``; ``forward`` returns what the functional returns, e.g. :class:`losskit.lm.DPOOutput`)."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_bool, check_int, check_number, check_range
from .._reduction import check_reduction
from ..distillation import check_temperature
from ..linear import check_softcap
from ..lm import distill as _distill
from ..lm import logprobs as _logprobs
from ..lm import policy as _policy
from ..lm import preference as _pref
from ._base import Loss

__all__ = [
    "CPOLoss",
    "DPOLoss",
    "GRPOLoss",
    "KTOLoss",
    "LinearDistillationLoss",
    "ORPOLoss",
    "SimPOLoss",
    "TokenLogProbs",
    "TopKDistillationLoss",
]


class DPOLoss(Loss):
    """Module form of :func:`losskit.lm.dpo_loss`."""

    def __init__(
        self,
        beta: float = 0.1,
        loss_type: str = "sigmoid",
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.beta = _pref.check_beta(beta)
        self.loss_type = _pref.check_choice("loss_type", loss_type, _pref.DPO_LOSS_TYPES)
        self.label_smoothing = _pref.check_label_smoothing(label_smoothing, self.loss_type)

    def forward(
        self,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        ref_chosen_logps: torch.Tensor,
        ref_rejected_logps: torch.Tensor,
    ) -> _pref.DPOOutput:
        return _pref.dpo_loss(
            policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
            beta=self.beta, loss_type=self.loss_type, label_smoothing=self.label_smoothing,
            reduction=self.reduction,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"beta={self.beta}, loss_type={self.loss_type!r}, {super().extra_repr()}"


class SimPOLoss(Loss):
    """Module form of :func:`losskit.lm.simpo_loss`."""

    def __init__(
        self,
        beta: float = 2.0,
        gamma: float = 0.5,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.beta = _pref.check_beta(beta)
        self.gamma = check_range("gamma", gamma, 0.0, finite=True)
        self.label_smoothing = _pref.check_label_smoothing(label_smoothing, "simpo")

    def forward(
        self, policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor
    ) -> _pref.SimPOOutput:
        return _pref.simpo_loss(
            policy_chosen_logps, policy_rejected_logps, beta=self.beta, gamma=self.gamma,
            label_smoothing=self.label_smoothing, reduction=self.reduction,
        )  # fmt: skip


class CPOLoss(Loss):
    """Module form of :func:`losskit.lm.cpo_loss`."""

    def __init__(
        self,
        beta: float = 0.1,
        loss_type: str = "sigmoid",
        label_smoothing: float = 0.0,
        simpo_gamma: float = 0.5,
        cpo_alpha: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.beta = _pref.check_beta(beta)
        self.loss_type = _pref.check_choice("loss_type", loss_type, _pref.CPO_LOSS_TYPES)
        self.label_smoothing = _pref.check_label_smoothing(label_smoothing, self.loss_type)
        self.simpo_gamma = check_range("simpo_gamma", simpo_gamma, 0.0, finite=True)
        self.cpo_alpha = check_range("cpo_alpha", cpo_alpha, 0.0, finite=True)

    def forward(
        self,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        chosen_nll: torch.Tensor | None = None,
    ) -> _pref.CPOOutput:
        return _pref.cpo_loss(
            policy_chosen_logps, policy_rejected_logps, chosen_nll, beta=self.beta,
            loss_type=self.loss_type, label_smoothing=self.label_smoothing,
            simpo_gamma=self.simpo_gamma, cpo_alpha=self.cpo_alpha, reduction=self.reduction,
        )  # fmt: skip


class ORPOLoss(Loss):
    """Module form of :func:`losskit.lm.orpo_loss`."""

    def __init__(self, beta: float = 0.1, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.beta = _pref.check_beta(beta)

    def forward(
        self,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        chosen_nll: torch.Tensor | None = None,
    ) -> _pref.ORPOOutput:
        return _pref.orpo_loss(
            policy_chosen_logps, policy_rejected_logps, chosen_nll, beta=self.beta,
            reduction=self.reduction,
        )  # fmt: skip


class KTOLoss(Loss):
    """Module form of :func:`losskit.lm.kto_loss`."""

    def __init__(
        self,
        beta: float = 0.1,
        desirable_weight: float = 1.0,
        undesirable_weight: float = 1.0,
        loss_type: str = "kto",
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.beta = _pref.check_beta(beta)
        self.desirable_weight = check_range("desirable_weight", desirable_weight, 0.0, finite=True)
        self.undesirable_weight = check_range(
            "undesirable_weight", undesirable_weight, 0.0, finite=True
        )
        self.loss_type = _pref.check_choice("loss_type", loss_type, _pref.KTO_LOSS_TYPES)

    def forward(
        self,
        policy_logps: torch.Tensor,
        ref_logps: torch.Tensor,
        desirable: torch.Tensor,
        kl: torch.Tensor | float | None = None,
    ) -> _pref.KTOOutput:
        return _pref.kto_loss(
            policy_logps, ref_logps, desirable, kl, beta=self.beta,
            desirable_weight=self.desirable_weight, undesirable_weight=self.undesirable_weight,
            loss_type=self.loss_type, reduction=self.reduction,
        )  # fmt: skip


class GRPOLoss(nn.Module):
    """Module form of :func:`losskit.lm.grpo_loss` (its ``loss_type`` is the reduction)."""

    def __init__(
        self,
        beta: float = 0.0,
        epsilon: float = 0.2,
        epsilon_high: float | None = None,
        loss_type: str = "grpo",
        max_completion_length: int | None = None,
        importance_sampling: str = "token",
    ) -> None:
        super().__init__()
        (
            self.beta, self.epsilon, self.epsilon_high, self.loss_type,
            self.max_completion_length, self.importance_sampling,
        ) = _policy.check_grpo_options(
            beta, epsilon, epsilon_high, loss_type, max_completion_length, importance_sampling
        )  # fmt: skip

    def forward(
        self,
        logps: torch.Tensor,
        old_logps: torch.Tensor,
        advantages: torch.Tensor,
        mask: torch.Tensor,
        ref_logps: torch.Tensor | None = None,
        normalizer: torch.Tensor | float | None = None,
    ) -> _policy.GRPOOutput:
        return _policy.grpo_loss(
            logps, old_logps, advantages, mask, ref_logps=ref_logps, beta=self.beta,
            epsilon=self.epsilon, epsilon_high=self.epsilon_high, loss_type=self.loss_type,
            max_completion_length=self.max_completion_length,
            importance_sampling=self.importance_sampling, normalizer=normalizer,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"beta={self.beta}, epsilon={self.epsilon}, loss_type={self.loss_type!r}"


class TokenLogProbs(nn.Module):
    """Module form of :func:`losskit.lm.token_logprobs` (no parameters of its own: pass the
    model's ``lm_head.weight``, so a tied embedding stays tied)."""

    def __init__(
        self,
        temperature: float = 1.0,
        softcap: float | None = None,
        logit_scale: float = 1.0,
        return_entropy: bool = False,
        ignore_index: int = -100,
        shift: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)
        self.softcap = check_softcap(softcap)
        self.logit_scale = check_number("logit_scale", logit_scale)
        self.return_entropy = check_bool("return_entropy", return_entropy)
        self.ignore_index = check_int("ignore_index", ignore_index)
        self.shift = check_bool("shift", shift)
        self.chunk_size = chunk_size

    def forward(
        self,
        hidden_states: torch.Tensor,
        lm_head_weight: torch.Tensor,
        tokens: torch.Tensor,
        lm_head_bias: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return _logprobs.token_logprobs(
            hidden_states, lm_head_weight, tokens, lm_head_bias=lm_head_bias,
            temperature=self.temperature, softcap=self.softcap, logit_scale=self.logit_scale,
            return_entropy=self.return_entropy, ignore_index=self.ignore_index, shift=self.shift,
            chunk_size=self.chunk_size,
        )  # fmt: skip


class LinearDistillationLoss(Loss):
    """Module form of :func:`losskit.lm.linear_distillation_loss`."""

    def __init__(
        self,
        divergence: str = "kl",
        beta: float = 0.5,
        temperature: float = 1.0,
        ignore_index: int = -100,
        hard_weight: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(check_reduction(reduction))
        self.divergence = _pref.check_choice("divergence", divergence, _distill.DIVERGENCES)
        self.beta = _distill._check_beta(beta, self.divergence)
        self.temperature = check_temperature(temperature)
        self.ignore_index = check_int("ignore_index", ignore_index)
        self.hard_weight = check_range("hard_weight", hard_weight, 0.0, 1.0)

    def forward(
        self,
        student_hidden: torch.Tensor,
        student_weight: torch.Tensor,
        teacher_hidden: torch.Tensor,
        teacher_weight: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return _distill.linear_distillation_loss(
            student_hidden, student_weight, teacher_hidden, teacher_weight,
            divergence=self.divergence, beta=self.beta, temperature=self.temperature,
            ignore_index=self.ignore_index, labels=labels, hard_weight=self.hard_weight,
            reduction=self.reduction,
        )  # fmt: skip


class TopKDistillationLoss(Loss):
    """Module form of :func:`losskit.lm.topk_distillation_loss`."""

    def __init__(
        self,
        divergence: str = "kl",
        beta: float = 0.5,
        temperature: float = 1.0,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.divergence = _pref.check_choice("divergence", divergence, _distill.DIVERGENCES)
        self.beta = _distill._check_beta(beta, self.divergence)
        self.temperature = check_temperature(temperature)
        self.ignore_index = check_int("ignore_index", ignore_index)

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_topk_logprobs: torch.Tensor,
        teacher_topk_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        student_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return _distill.topk_distillation_loss(
            student_logits, teacher_topk_logprobs, teacher_topk_ids,
            student_weight=student_weight, divergence=self.divergence, beta=self.beta,
            temperature=self.temperature, ignore_index=self.ignore_index, labels=labels,
            reduction=self.reduction,
        )  # fmt: skip
