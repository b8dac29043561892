"""Preference-optimisation losses on sequence log-probabilities: DPO and its variants, SimPO,
CPO, ORPO and KTO.

Every function takes *sequence* log-probabilities, one value per completion: the sum (or, where
the method asks for it, the mean) of the per-token log-probabilities of the completion, which the
caller computes (e.g. with :func:`losskit.lm.token_logprobs` and a masked sum). The formulas are
Hugging Face TRL's (``DPOTrainer``, ``KTOTrainer``, and ``CPOTrainer``/``ORPOTrainer``, which
TRL 1.x moved to ``trl.experimental``); each docstring says where TRL differs from the paper and
from losskit. Each returns a ``NamedTuple`` whose first field is the loss (reduced with
``reduction``) and whose other fields are the detached statistics TRL logs (rewards, odds
ratios). Computed in float32 at least; the outputs have the dtype of ``policy_chosen_logps``.

tests/test_lm_trl_oracle.py runs TRL 1.16.0's own trainer code (``_compute_loss`` /
``get_batch_loss_metrics`` with a stand-in ``self`` and model) on the same tensors and checks the
losses, their gradients and the logged rewards to 1e-10 in float64 (ORPO: to float32 rounding).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .._checks import (
    any_true,
    check_floating,
    check_number,
    check_range,
    check_same_device,
    check_same_shape,
    check_tensor,
    value_checks_enabled,
)
from .._dispatch import Backends
from .._precision import compute_dtype
from .._reduction import check_reduction, reduce

__all__ = [
    "CPOOutput",
    "DPOOutput",
    "KTOOutput",
    "ORPOOutput",
    "SimPOOutput",
    "cpo_loss",
    "dpo_loss",
    "kto_loss",
    "orpo_loss",
    "simpo_loss",
]

DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust", "bco_pair", "apo_zero", "apo_down")
CPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "simpo")
KTO_LOSS_TYPES = ("kto", "apo_zero_unpaired")
# loss types that read label_smoothing; any other with label_smoothing != 0 is an error (a silent
# no-op otherwise: the "CPO path that ignored its option" class of bug).
_SMOOTHED = ("sigmoid", "robust", "simpo")


class DPOOutput(NamedTuple):
    """``loss`` (reduced), and the per-pair rewards ``beta * (log pi - log pi_ref)`` (detached)."""

    loss: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


class SimPOOutput(NamedTuple):
    """``loss`` (reduced), and the per-pair rewards ``beta * log pi`` (detached)."""

    loss: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


CPOOutput = SimPOOutput


class ORPOOutput(NamedTuple):
    """``loss``; rewards ``beta * log pi``; per pair ``log sigmoid(log_odds)`` and ``log_odds``
    (TRL logs their means as ``log_odds_ratio`` and ``log_odds_chosen``); all but loss detached."""

    loss: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    log_odds_ratio: torch.Tensor
    log_odds_chosen: torch.Tensor


class KTOOutput(NamedTuple):
    """``loss`` (reduced) and the per-completion rewards ``beta * (log pi - log pi_ref)``."""

    loss: torch.Tensor
    rewards: torch.Tensor


# ---------------------------------------------------------------- shared checks


def check_beta(beta: object, name: str = "beta") -> float:
    """A finite number ``> 0`` (every preference loss divides by or scales with it)."""
    b = check_number(name, beta)
    if not (0.0 < b < math.inf):
        raise ValueError(f"{name} must be a finite number > 0, got {beta!r}")
    return b


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_label_smoothing(label_smoothing: object, loss_type: str) -> float:
    high = 0.5 if loss_type == "robust" else 1.0
    eps = check_range(
        "label_smoothing", label_smoothing, 0.0, high, high_inclusive=loss_type != "robust"
    )
    if eps != 0.0 and loss_type not in _SMOOTHED:
        raise ValueError(
            f"label_smoothing={label_smoothing!r} has no effect with loss_type={loss_type!r}; "
            "only 'sigmoid', 'robust' (DPO) and 'simpo' (CPO) use it (pass 0.0)"
        )
    return eps


def check_logps(names: tuple[str, ...], values: tuple[object, ...]) -> tuple[torch.Tensor, ...]:
    """Floating tensors of one shape on one device (one log-probability per completion)."""
    tensors = tuple(check_floating(n, v) for n, v in zip(names, values, strict=True))
    for n, t in zip(names[1:], tensors[1:], strict=True):
        check_same_shape(names[0], tensors[0], n, t)
    return tensors


def check_optional_nll(nll: object, like: torch.Tensor, like_name: str) -> torch.Tensor | None:
    """``chosen_nll``: None, a scalar tensor (counted once per pair) or one value per pair."""
    if nll is None:
        return None
    nll = check_floating("chosen_nll", nll)
    check_same_device("chosen_nll", nll, like, like_name)
    if nll.dim() != 0 and nll.shape != like.shape:
        raise ValueError(
            f"chosen_nll must be a scalar or have the shape of {like_name} {tuple(like.shape)}, "
            f"got {tuple(nll.shape)}"
        )
    return nll


def _compute(*ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    dtype = compute_dtype(ts[0].dtype)
    return tuple(t.to(dtype) for t in ts)


def _smoothed_sigmoid(z: torch.Tensor, eps: float) -> torch.Tensor:
    """``-(1 - eps) log sigma(z) - eps log sigma(-z)`` (conservative DPO / cDPO)."""
    loss = -F.logsigmoid(z)
    if eps != 0.0:
        loss = (1.0 - eps) * loss - eps * F.logsigmoid(-z)
    return loss


# ---------------------------------------------------------------- DPO


def _dpo_formula(
    pc: torch.Tensor,
    pr: torch.Tensor,
    rc: torch.Tensor,
    rr: torch.Tensor,
    beta: float,
    loss_type: str,
    eps: float,
    reduction: str,
) -> DPOOutput:
    out_dtype = pc.dtype
    pc, pr, rc, rr = _compute(pc, pr, rc, rr)
    chosen, rejected = pc - rc, pr - rr  # log-ratios against the reference
    delta = chosen - rejected
    if loss_type == "sigmoid":
        loss = _smoothed_sigmoid(beta * delta, eps)
    elif loss_type == "hinge":
        loss = torch.relu(1.0 - beta * delta)
    elif loss_type == "ipo":
        loss = (delta - 1.0 / (2.0 * beta)) ** 2
    elif loss_type == "robust":
        loss = (-(1.0 - eps) * F.logsigmoid(beta * delta) + eps * F.logsigmoid(-beta * delta)) / (
            1.0 - 2.0 * eps
        )
    elif loss_type == "bco_pair":
        loss = -F.logsigmoid(beta * chosen) - F.logsigmoid(-beta * rejected)
    elif loss_type == "apo_zero":
        # 1 - sigma(x) written as sigma(-x): no cancellation for large x.
        loss = torch.sigmoid(-beta * chosen) + torch.sigmoid(beta * rejected)
    else:  # apo_down
        loss = torch.sigmoid(beta * chosen) + torch.sigmoid(-beta * delta)
    return DPOOutput(
        reduce(loss, reduction).to(out_dtype),
        (beta * chosen).detach().to(out_dtype),
        (beta * rejected).detach().to(out_dtype),
    )


_DPO = Backends("dpo_loss", formula=_dpo_formula)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> DPOOutput:
    r"""Direct Preference Optimization loss and its variants on sequence log-probabilities.

    With the log-ratios :math:`c = \log\pi(y_w) - \log\pi_{ref}(y_w)`,
    :math:`r = \log\pi(y_l) - \log\pi_{ref}(y_l)`, :math:`\Delta = c - r`, per pair:

    ============  ==========================================================================
    ``sigmoid``   :math:`-(1-\varepsilon)\log\sigma(\beta\Delta) - \varepsilon\log\sigma(-\beta\Delta)`
    ``hinge``     :math:`\max(0,\ 1 - \beta\Delta)`
    ``ipo``       :math:`(\Delta - \tfrac{1}{2\beta})^2`
    ``robust``    :math:`\frac{-(1-\varepsilon)\log\sigma(\beta\Delta) + \varepsilon\log\sigma(-\beta\Delta)}{1 - 2\varepsilon}`
    ``bco_pair``  :math:`-\log\sigma(\beta c) - \log\sigma(-\beta r)`
    ``apo_zero``  :math:`1 - \sigma(\beta c) + \sigma(\beta r)`
    ``apo_down``  :math:`\sigma(\beta c) + 1 - \sigma(\beta\Delta)`
    ============  ==========================================================================

    The rewards are :math:`\beta c` and :math:`\beta r` (detached), as TRL logs them.

    Args:
        policy_chosen_logps: ``(B,)`` (any shape; all four alike) sequence log-probabilities of
            the chosen completions under the policy (summed over tokens for DPO; per-token means
            for ``ipo``, see below).
        policy_rejected_logps: same shape, rejected completions under the policy.
        ref_chosen_logps: same shape, chosen completions under the frozen reference model.
        ref_rejected_logps: same shape, rejected completions under the reference.
        beta: :math:`\beta > 0` (the KL strength; :math:`\tau` of the IPO paper).
        loss_type: one of the rows above.
        label_smoothing: :math:`\varepsilon`, the assumed probability that a label is flipped:
            in ``[0, 1]`` for ``sigmoid`` (conservative DPO), ``[0, 0.5)`` for ``robust``; any other
            loss type raises unless it is 0.
        reduction: ``"mean"`` (over pairs), ``"sum"`` or ``"none"`` (the input shape).

    Returns:
        :class:`DPOOutput` ``(loss, chosen_rewards, rejected_rewards)``; the rewards have the
        input shape. Dtype of ``policy_chosen_logps`` (computed in float32 at least).

    Edge cases: an empty batch gives NaN for ``mean`` and 0 for ``sum``. Gradients flow to all four
    inputs; pass reference log-probabilities computed under ``torch.no_grad()``.

    Example:
        >>> pc = torch.tensor([-12.0, -30.5], requires_grad=True)
        >>> pr = torch.tensor([-14.0, -29.0], requires_grad=True)
        >>> out = losskit.lm.dpo_loss(pc, pr, torch.tensor([-12.5, -30.0]), torch.tensor([-13.0, -29.5]))
        >>> out.loss.backward()
        >>> out.chosen_rewards.shape
        torch.Size([2])

    References: Rafailov et al., "Direct Preference Optimization", 2023 (``sigmoid``); Azar et
    al., "A General Theoretical Paradigm to Understand Learning from Human Preferences", 2023
    (``ipo``); Chowdhury et al., "Provably Robust DPO", 2024 (``robust``); Jung et al., "Binary
    Classifier Optimization", 2024 (``bco_pair``); D'Oosterlinck et al., "Anchored Preference
    Optimization", 2024 (``apo_*``).

    TRL: each row equals TRL 1.16's ``DPOTrainer._compute_loss`` (``f_divergence_type=
    "reverse_kl"``, one loss type), whose sequence log-probability is the sum of the per-token
    log-probabilities over the completion, and ``reduction="mean"`` its mean over pairs (checked
    to 1e-10 in float64, gradients and logged rewards too). The differences:

    * ``ipo``: TRL divides each log-ratio by the completion's token count before the square (a
      normalisation the IPO paper does not write). Pass per-token *mean* log-probabilities (all
      four inputs) to get TRL's loss, sums to get the paper's. TRL still logs its rewards on the
      *summed* log-ratios; losskit's rewards are :math:`\beta` times what you pass (multiply by
      the token counts to get TRL's numbers).
    * ``sigmoid`` with ``label_smoothing``: TRL 1.16's ``DPOTrainer`` silently ignores
      ``label_smoothing`` for ``sigmoid``; losskit applies the conservative-DPO form above (TRL's
      earlier ``DPOTrainer`` and its ``CPOTrainer`` ``sigmoid`` row on the log-ratios; equal at
      :math:`\varepsilon = 0`). ``robust`` reads it as TRL does, in ``[0, 0.5)``.
    * ``bco_pair``: earlier TRL subtracted a running mean of the rewards, which TRL 1.16 and
      losskit do not (keep it yourself and subtract it from the inputs' log-ratios if you want it).
    * Not here: TRL's ``sigmoid_norm`` is ``sigmoid`` on per-token mean log-probabilities (pass
      those); several ``loss_type`` with ``loss_weights`` (MPO) is the weighted sum of separate
      calls; the other TRL loss types (``exo_pair``, ``nca_pair``, ``sppo_hard``, ``aot``,
      ``aot_unpaired``, ``discopop``, ``sft``), the ``f_divergence_type`` variants, LD-DPO's
      ``ld_alpha`` and WPO's ``use_weighting`` are not implemented.
    """
    pc, pr, rc, rr = check_logps(
        ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps"),
        (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps),
    )
    beta = check_beta(beta)
    loss_type = check_choice("loss_type", loss_type, DPO_LOSS_TYPES)
    eps = check_label_smoothing(label_smoothing, loss_type)
    reduction = check_reduction(reduction)
    return _DPO(pc, pr, rc, rr, beta, loss_type, eps, reduction)


dpo_loss.backends = _DPO


# ---------------------------------------------------------------- SimPO and CPO


def _cpo_formula(
    pc: torch.Tensor,
    pr: torch.Tensor,
    nll: torch.Tensor | None,
    beta: float,
    loss_type: str,
    eps: float,
    gamma: float,
    cpo_alpha: float,
    reduction: str,
) -> SimPOOutput:
    out_dtype = pc.dtype
    pc, pr = _compute(pc, pr)
    delta = pc - pr
    if loss_type == "sigmoid":
        loss = _smoothed_sigmoid(beta * delta, eps)
    elif loss_type == "simpo":
        loss = _smoothed_sigmoid(beta * delta - gamma, eps)
    elif loss_type == "hinge":
        loss = torch.relu(1.0 - beta * delta)
    else:  # ipo
        loss = (delta - 1.0 / (2.0 * beta)) ** 2
    if nll is not None and cpo_alpha != 0.0:
        loss = loss + cpo_alpha * nll.to(loss.dtype)
    return SimPOOutput(
        reduce(loss, reduction).to(out_dtype),
        (beta * pc).detach().to(out_dtype),
        (beta * pr).detach().to(out_dtype),
    )


_CPO = Backends("cpo_loss", formula=_cpo_formula)


def simpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    beta: float = 2.0,
    gamma: float = 0.5,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> SimPOOutput:
    r"""SimPO: a reference-free margin loss on length-normalised log-probabilities.

    With the *per-token mean* log-probabilities :math:`\bar c = \frac{1}{|y_w|}\log\pi(y_w)` and
    :math:`\bar r = \frac{1}{|y_l|}\log\pi(y_l)`, per pair:

    .. math::
        \ell = -(1-\varepsilon)\log\sigma(\beta(\bar c - \bar r) - \gamma)
               - \varepsilon\log\sigma(-\beta(\bar c - \bar r) + \gamma)

    Args:
        policy_chosen_logps: ``(B,)`` (any shape) mean log-probabilities of the chosen completions.
        policy_rejected_logps: same shape, rejected completions.
        beta: :math:`\beta > 0` (2.0 to 2.5 in the paper).
        gamma: the target reward margin :math:`\gamma \ge 0` (TRL's ``simpo_gamma``, 0.5 by default;
            the paper writes it as :math:`\gamma/\beta` times :math:`\beta`).
        label_smoothing: :math:`\varepsilon \in [0, 1]`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        :class:`SimPOOutput` ``(loss, chosen_rewards, rejected_rewards)`` with rewards
        :math:`\beta\bar c`, :math:`\beta\bar r` (detached).

    Edge cases: empty batch ``mean`` NaN, ``sum`` 0.

    Example:
        >>> pc = torch.tensor([-0.8, -1.1], requires_grad=True)
        >>> losskit.lm.simpo_loss(pc, torch.tensor([-1.0, -1.0])).loss.backward()

    Reference: Meng, Xia and Chen, "SimPO: Simple Preference Optimization with a Reference-Free
    Reward", 2024 (Eq. 6). As TRL's ``CPOTrainer(loss_type="simpo", cpo_alpha=0)``
    (``trl.experimental.cpo`` in TRL 1.x), which writes it as
    :math:`\beta(\bar c - \bar r - \gamma/\beta)` (the same number to rounding; checked to 1e-10
    against TRL 1.16) and adds the label smoothing. TRL's ``concatenated_forward`` averages the
    log-probabilities over tokens for ``simpo``, as this function expects.
    """
    pc, pr = check_logps(
        ("policy_chosen_logps", "policy_rejected_logps"),
        (policy_chosen_logps, policy_rejected_logps),
    )
    beta = check_beta(beta)
    gamma = check_range("gamma", gamma, 0.0, finite=True)
    eps = check_label_smoothing(label_smoothing, "simpo")
    reduction = check_reduction(reduction)
    return _CPO(pc, pr, None, beta, "simpo", eps, gamma, 0.0, reduction)


simpo_loss.backends = _CPO


def cpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    chosen_nll: torch.Tensor | None = None,
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
    cpo_alpha: float = 1.0,
    reduction: str = "mean",
) -> CPOOutput:
    r"""Contrastive Preference Optimization: a reference-free preference term plus a chosen-NLL term.

    With :math:`\Delta = \log\pi(y_w) - \log\pi(y_l)`, per pair
    :math:`\ell = \ell_{pref} + \alpha\,\mathrm{NLL}(y_w)`, where :math:`\ell_{pref}` is

    ==========  ===============================================================================
    ``sigmoid`` :math:`-(1-\varepsilon)\log\sigma(\beta\Delta) - \varepsilon\log\sigma(-\beta\Delta)`
    ``hinge``   :math:`\max(0,\ 1 - \beta\Delta)`
    ``ipo``     :math:`(\Delta - \tfrac{1}{2\beta})^2`
    ``simpo``   the ``sigmoid`` row at :math:`\beta\Delta - \gamma` (:func:`simpo_loss`)
    ==========  ===============================================================================

    Args:
        policy_chosen_logps: ``(B,)`` (any shape) sequence log-probabilities of the chosen
            completions (sums; per-token means for ``ipo`` and ``simpo``, as TRL computes them).
        policy_rejected_logps: same shape, rejected completions.
        chosen_nll: optional negative log-likelihood of the chosen completions: one value per pair,
            or a scalar counted once per pair (TRL's token-mean cross entropy over the chosen
            completions, so that ``reduction="mean"`` gives TRL's ``mean(pref) + alpha * nll``).
            ``None`` leaves the term out.
        beta: :math:`\beta > 0`.
        loss_type: one of the rows above.
        label_smoothing: :math:`\varepsilon` for ``sigmoid``/``simpo``; 0 otherwise.
        simpo_gamma: :math:`\gamma \ge 0`, used by ``simpo``.
        cpo_alpha: :math:`\alpha \ge 0`, the weight of the NLL term.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        :class:`CPOOutput` ``(loss, chosen_rewards, rejected_rewards)``, rewards
        :math:`\beta\log\pi` (detached).

    Edge cases: empty batch ``mean`` NaN, ``sum`` 0.

    Example:
        >>> pc = torch.tensor([-20.0, -31.0], requires_grad=True)
        >>> out = losskit.lm.cpo_loss(pc, torch.tensor([-22.0, -30.0]), torch.tensor(1.7))
        >>> out.loss.backward()

    Reference: Xu et al., "Contrastive Preference Optimization", 2024 (Eq. 3 and the NLL term of
    Eq. 5). As TRL's ``CPOTrainer`` (``trl.experimental.cpo`` in TRL 1.x): ``cpo_loss`` plus
    ``cpo_alpha * nll_loss``, i.e. ``losses.mean() + cpo_alpha * nll`` with a scalar
    ``chosen_nll`` (checked to 1e-10 against TRL 1.16, gradients and logged rewards too). TRL's
    AlphaPO reward transform (``alpha != 0``) is not included.
    """
    pc, pr = check_logps(
        ("policy_chosen_logps", "policy_rejected_logps"),
        (policy_chosen_logps, policy_rejected_logps),
    )
    nll = check_optional_nll(chosen_nll, pc, "policy_chosen_logps")
    beta = check_beta(beta)
    loss_type = check_choice("loss_type", loss_type, CPO_LOSS_TYPES)
    eps = check_label_smoothing(label_smoothing, loss_type)
    gamma = check_range("simpo_gamma", simpo_gamma, 0.0, finite=True)
    alpha = check_range("cpo_alpha", cpo_alpha, 0.0, finite=True)
    reduction = check_reduction(reduction)
    return _CPO(pc, pr, nll, beta, loss_type, eps, gamma, alpha, reduction)


cpo_loss.backends = _CPO


# ---------------------------------------------------------------- ORPO


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, accurate at both ends (Maechler 2012)."""
    return torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _orpo_formula(
    pc: torch.Tensor, pr: torch.Tensor, nll: torch.Tensor | None, beta: float, reduction: str
) -> ORPOOutput:
    out_dtype = pc.dtype
    pc, pr = _compute(pc, pr)
    log_odds = (pc - pr) - (_log1mexp(pc) - _log1mexp(pr))
    ratio = F.logsigmoid(log_odds)
    loss = -beta * ratio
    if nll is not None:
        loss = loss + nll.to(loss.dtype)
    return ORPOOutput(
        reduce(loss, reduction).to(out_dtype),
        (beta * pc).detach().to(out_dtype),
        (beta * pr).detach().to(out_dtype),
        ratio.detach().to(out_dtype),
        log_odds.detach().to(out_dtype),
    )


_ORPO = Backends("orpo_loss", formula=_orpo_formula)


def _check_negative(name: str, t: torch.Tensor) -> None:
    if not value_checks_enabled() or t.numel() == 0:
        return
    bad = ~(t < 0)  # NaN included
    if any_true(bad):
        raise ValueError(
            f"{name} must hold log-probabilities < 0 (the odds p / (1 - p) need p < 1), "
            f"found {float(t[bad].flatten()[0])!r}"
        )


def orpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    chosen_nll: torch.Tensor | None = None,
    *,
    beta: float = 0.1,
    reduction: str = "mean",
) -> ORPOOutput:
    r"""ORPO: the odds-ratio preference term, plus the chosen completion's NLL when given.

    With the per-token *mean* log-probabilities :math:`a = \log P(y_w|x)`, :math:`b = \log
    P(y_l|x)` and the log odds ratio

    .. math::
        L = \log\frac{\mathrm{odds}(y_w)}{\mathrm{odds}(y_l)}
          = (a - b) - \left(\log(1 - e^{a}) - \log(1 - e^{b})\right),

    per pair :math:`\ell = \mathrm{NLL}(y_w) - \lambda \log\sigma(L)`.

    Args:
        policy_chosen_logps: ``(B,)`` (any shape) mean log-probabilities of the chosen
            completions, all ``< 0``.
        policy_rejected_logps: same shape, rejected completions, ``< 0``.
        chosen_nll: optional NLL of the chosen completions (one per pair, or a scalar counted once
            per pair: TRL's token-mean cross entropy); ``None`` gives the odds-ratio term alone.
        beta: :math:`\lambda > 0` (TRL's ``beta``; 0.1 in the paper).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        :class:`ORPOOutput` ``(loss, chosen_rewards, rejected_rewards, log_odds_ratio,
        log_odds_chosen)``: rewards :math:`\lambda a`, :math:`\lambda b`; per pair
        :math:`\log\sigma(L)` and :math:`L` (TRL logs their means); all detached but the loss.

    Edge cases: a log-probability :math:`\ge 0` raises ``ValueError`` (a value check: the odds of
    a probability 1 are infinite); :math:`\log(1 - e^{a})` is computed without cancellation, so
    :math:`a` near 0 stays finite. Empty batch ``mean`` NaN, ``sum`` 0.

    Example:
        >>> pc = torch.tensor([-0.7, -1.2], requires_grad=True)
        >>> losskit.lm.orpo_loss(pc, torch.tensor([-1.0, -0.9]), torch.tensor(0.9)).loss.backward()

    Reference: Hong, Lee and Thorne, "ORPO: Monolithic Preference Optimization without Reference
    Model", 2024 (Eqs. 4-7). As TRL's ``ORPOTrainer`` (``trl.experimental.orpo`` in TRL 1.x;
    ``loss = nll - mean(beta * log_sigmoid(log_odds))``, the same :math:`\log(1 - e^a)` branch at
    :math:`-\ln 2`). TRL casts the log-probabilities to float32 (``.float()``) before the odds,
    losskit computes in float32 at least: on float64 inputs the two agree to float32 rounding
    (2e-7 relative measured against TRL 1.16), on float32 inputs they do the same computation.
    """
    pc, pr = check_logps(
        ("policy_chosen_logps", "policy_rejected_logps"),
        (policy_chosen_logps, policy_rejected_logps),
    )
    nll = check_optional_nll(chosen_nll, pc, "policy_chosen_logps")
    beta = check_beta(beta)
    reduction = check_reduction(reduction)
    _check_negative("policy_chosen_logps", pc)
    _check_negative("policy_rejected_logps", pr)
    return _ORPO(pc, pr, nll, beta, reduction)


orpo_loss.backends = _ORPO


# ---------------------------------------------------------------- KTO


def _kto_formula(
    logps: torch.Tensor,
    ref: torch.Tensor,
    desirable: torch.Tensor,
    kl: torch.Tensor | float,
    beta: float,
    w_d: float,
    w_u: float,
    loss_type: str,
    reduction: str,
) -> KTOOutput:
    out_dtype = logps.dtype
    logps, ref = _compute(logps, ref)
    ratio = logps - ref
    if loss_type == "kto":
        kl = kl.detach().to(ratio.dtype) if isinstance(kl, torch.Tensor) else kl
        # 1 - sigma(x) = sigma(-x)
        good = w_d * torch.sigmoid(-beta * (ratio - kl))
        bad = w_u * torch.sigmoid(-beta * (kl - ratio))
    else:  # apo_zero_unpaired
        good = w_d * torch.sigmoid(-beta * ratio)
        bad = w_u * torch.sigmoid(beta * ratio)
    loss = torch.where(desirable, good, bad)
    return KTOOutput(reduce(loss, reduction).to(out_dtype), (beta * ratio).detach().to(out_dtype))


_KTO = Backends("kto_loss", formula=_kto_formula)


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    kl: torch.Tensor | float | None = None,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    loss_type: str = "kto",
    reduction: str = "mean",
) -> KTOOutput:
    r"""Kahneman-Tversky Optimization on unpaired completions labelled desirable or not.

    With the log-ratio :math:`\rho = \log\pi(y) - \log\pi_{ref}(y)` and the KL baseline
    :math:`z_0` (a constant), per completion:

    .. math::
        \ell = \begin{cases}
            \lambda_D\,(1 - \sigma(\beta(\rho - z_0))) & y \text{ desirable} \\
            \lambda_U\,(1 - \sigma(\beta(z_0 - \rho))) & y \text{ undesirable}
        \end{cases}

    ``loss_type="apo_zero_unpaired"`` drops :math:`z_0`: :math:`\lambda_D(1 - \sigma(\beta\rho))`
    and :math:`\lambda_U\sigma(\beta\rho)`.

    Args:
        policy_logps: ``(B,)`` (any shape) sequence log-probabilities (sums over tokens) under the
            policy.
        ref_logps: same shape, under the reference model.
        desirable: same shape, ``bool``: whether each completion is desirable.
        kl: the baseline :math:`z_0`: a 0-D tensor or a float, detached here. TRL estimates it as
            ``(kl_logps - ref_kl_logps).mean().clamp(min=0)`` over mismatched prompt/completion
            pairs (gathered across ranks); compute it that way and pass it in. Required for
            ``"kto"``, ignored by ``"apo_zero_unpaired"``.
        beta: :math:`\beta > 0`.
        desirable_weight: :math:`\lambda_D \ge 0`.
        undesirable_weight: :math:`\lambda_U \ge 0`.
        loss_type: ``"kto"`` or ``"apo_zero_unpaired"``.
        reduction: ``"mean"`` (over completions, as TRL's mean over its concatenated chosen and
            rejected losses), ``"sum"`` or ``"none"``.

    Returns:
        :class:`KTOOutput` ``(loss, rewards)``, rewards :math:`\beta\rho` (detached); TRL logs
        the desirable and undesirable ones separately (``rewards[desirable]``).

    Edge cases: empty batch ``mean`` NaN, ``sum`` 0; an all-desirable batch is fine.

    Example:
        >>> logps = torch.tensor([-20.0, -25.0, -18.0], requires_grad=True)
        >>> ref = torch.tensor([-21.0, -24.0, -18.5])
        >>> good = torch.tensor([True, False, True])
        >>> losskit.lm.kto_loss(logps, ref, good, torch.tensor(0.3)).loss.backward()

    Reference: Ethayarajh et al., "KTO: Model Alignment as Prospect Theoretic Optimization", 2024
    (Eq. 7/8). As TRL's ``KTOTrainer``; the paper's :math:`\lambda_y - v(x, y)` form differs
    from it by the constant :math:`\lambda_y`, which TRL (and losskit) leave out. Checked to
    1e-10 against TRL 1.16's ``KTOTrainer._compute_loss`` (loss, gradients, logged rewards and
    KL): TRL's loss is the ``nanmean`` of its concatenated weighted desirable and undesirable
    losses, the ``mean`` here; the KL baseline is TRL's only when you clamp it at 0 as above.
    """
    logps, ref = check_logps(("policy_logps", "ref_logps"), (policy_logps, ref_logps))
    desirable = check_tensor("desirable", desirable)
    if desirable.dtype != torch.bool:
        raise TypeError(
            f"desirable must be a bool tensor (True for desirable completions), got dtype "
            f"{desirable.dtype}"
        )
    check_same_shape("policy_logps", logps, "desirable", desirable)
    loss_type = check_choice("loss_type", loss_type, KTO_LOSS_TYPES)
    if kl is None:
        if loss_type == "kto":
            raise ValueError("kl (the KL baseline z0, a 0-D tensor or a float) is required for "
                             "loss_type='kto'")  # fmt: skip
        kl = 0.0
    elif isinstance(kl, torch.Tensor):
        check_floating("kl", kl)
        check_same_device("kl", kl, logps, "policy_logps")
        if kl.dim() != 0:
            raise ValueError(f"kl must be a 0-D tensor or a float, got shape {tuple(kl.shape)}")
    else:
        kl = check_range("kl", kl, finite=True)
    beta = check_beta(beta)
    w_d = check_range("desirable_weight", desirable_weight, 0.0, finite=True)
    w_u = check_range("undesirable_weight", undesirable_weight, 0.0, finite=True)
    reduction = check_reduction(reduction)
    return _KTO(logps, ref, desirable, kl, beta, w_d, w_u, loss_type, reduction)


kto_loss.backends = _KTO
