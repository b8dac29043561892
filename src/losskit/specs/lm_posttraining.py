"""Registry entries of the post-training losses of :mod:`losskit.lm`.

The functionals return a ``NamedTuple`` (the loss and its statistics) or, for
:func:`losskit.lm.token_logprobs`, per-token values; the generic suite wants one tensor, reduced
by ``reduction``. Each entry therefore registers a *loss-only view*: the functional (and the
Module) called as users call it, with the loss field taken (or the log-probabilities plus the
entropies, reduced). Arguments that the Module takes in ``forward`` (``chosen_nll``,
``ref_logps``, ``lm_head_bias``, ``labels``) are positional in the samples, so that the suite's
"keywords go to the constructor" convention holds. Float64 values must agree with the NumPy
references to 1e-10.
"""

from __future__ import annotations

import torch

from .. import nn as lnn
from .. import reference as R
from .._reduction import REDUCTIONS, check_reduction, reduce
from .._registry import ErrorCase, LossInfo, Sample, register
from ..lm import distill as D
from ..lm import logprobs as LP
from ..lm import policy as P
from ..lm import preference as PR
from ._make import rand, randint, randn, with_ignored

FAMILY = "lm_posttraining"
TIGHT = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (2e-2, 2e-2),
    torch.bfloat16: (5e-2, 5e-2),
}


# ---------------------------------------------------------------- loss-only views


def _view(fn, name: str, allowed=REDUCTIONS, field=0, passes_reduction=True):
    """``fn(*args, **kwargs)`` reduced to one tensor, ``reduction`` checked against ``allowed``."""

    def view(*args, reduction="mean" if "mean" in allowed else allowed[0], **kwargs):
        reduction = check_reduction(reduction, allowed)
        out = fn(*args, **({**kwargs, "reduction": reduction} if passes_reduction else kwargs))
        return out[field]

    view.__name__ = view.__qualname__ = name
    view.backends = fn.backends
    return view


def _module_view(module_cls, allowed=REDUCTIONS, passes_reduction=True):
    """The Module built from the sample's keywords; its output reduced to the loss field."""

    class View(torch.nn.Module):
        def __init__(self, reduction="mean" if "mean" in allowed else allowed[0], **kwargs):
            super().__init__()
            reduction = check_reduction(reduction, allowed)
            self.inner = module_cls(
                **({**kwargs, "reduction": reduction} if passes_reduction else kwargs)
            )

        def forward(self, *args):
            return self.inner(*args)[0]

    View.__name__ = View.__qualname__ = f"{module_cls.__name__}LossOnly"
    return View


def _logps(g: torch.Generator, *shape: int, low: float = -40.0, high: float = -5.0):
    return rand(g, *shape, low=low, high=high)


# ---------------------------------------------------------------- DPO


def _dpo_samples(g: torch.Generator) -> list[Sample]:
    def four(n: int = 6, *shape: int):
        dims = (n, *shape)
        return tuple(_logps(g, *dims) for _ in range(4))

    samples = [Sample(args=four(), desc="sigmoid, defaults")]
    for loss_type, beta in (("hinge", 0.05), ("ipo", 0.5), ("bco_pair", 0.2), ("apo_zero", 0.3),
                            ("apo_down", 0.1)):  # fmt: skip
        samples.append(
            Sample(args=four(), kwargs={"beta": beta, "loss_type": loss_type}, desc=loss_type)
        )
    samples += [
        Sample(args=four(), kwargs={"label_smoothing": 0.1, "beta": 0.3}, desc="cDPO smoothing"),
        Sample(
            args=four(),
            kwargs={"loss_type": "robust", "label_smoothing": 0.2},
            desc="robust",
        ),
        Sample(args=four(2, 3), kwargs={"beta": 0.5}, desc="(2, 3) batch"),
    ]
    return samples


def _dpo_errors() -> list[ErrorCase]:
    a = torch.full((3,), -10.0)
    return [
        ErrorCase(
            args=(a, a, a, a[:2]),
            kwargs={},
            error=ValueError,
            match=r"ref_rejected_logps size \(2,\).*policy_chosen_logps size \(3,\)",
        ),
        ErrorCase(
            args=(a, a, a, a),
            kwargs={"beta": -0.1},
            error=ValueError,
            match=r"beta must be a finite number > 0, got -0\.1",
            in_constructor=True,
        ),
        ErrorCase(
            args=(a, a, a, a),
            kwargs={"loss_type": "kto"},
            error=ValueError,
            match=r"loss_type must be one of \('sigmoid'.*got 'kto'",
            in_constructor=True,
        ),
        ErrorCase(
            args=(a, a, a, a),
            kwargs={"loss_type": "hinge", "label_smoothing": 0.1},
            error=ValueError,
            match=r"label_smoothing=0\.1 has no effect with loss_type='hinge'",
            in_constructor=True,
        ),
        ErrorCase(
            args=(a, a, a, a),
            kwargs={"loss_type": "robust", "label_smoothing": 0.5},
            error=ValueError,
            match=r"label_smoothing must be in \[0, 0\.5\)",
            in_constructor=True,
        ),
        ErrorCase(
            args=(a.long(), a, a, a),
            kwargs={},
            error=TypeError,
            match=r"policy_chosen_logps must be a floating-point tensor, got dtype torch.int64",
        ),
    ]


register(
    LossInfo(
        name="dpo_loss",
        family=FAMILY,
        formula="-log sigmoid(beta ((pi_w - ref_w) - (pi_l - ref_l)))  (+ ipo, hinge, robust, ...)",
        functional=_view(PR.dpo_loss, "dpo_loss"),
        module=_module_view(lnn.DPOLoss),
        reference=R.dpo_loss,
        samples=_dpo_samples,
        error_cases=_dpo_errors,
        grad_args=(0, 1, 2, 3),
        tolerances=TIGHT,
    )
)


# ---------------------------------------------------------------- SimPO, CPO, ORPO


def _simpo_samples(g: torch.Generator) -> list[Sample]:
    def two(n: int = 6):
        return _logps(g, n, low=-3.0, high=-0.2), _logps(g, n, low=-3.0, high=-0.2)

    return [
        Sample(args=two(), desc="defaults"),
        Sample(args=two(), kwargs={"beta": 2.5, "gamma": 1.0}, desc="beta 2.5, gamma 1"),
        Sample(args=two(), kwargs={"label_smoothing": 0.2, "gamma": 0.0}, desc="smoothing"),
    ]


def _simpo_errors() -> list[ErrorCase]:
    a = torch.full((3,), -1.0)
    return [
        ErrorCase(args=(a, a[:2]), kwargs={}, error=ValueError, match=r"size \(2,\)"),
        ErrorCase(
            args=(a, a),
            kwargs={"gamma": -1.0},
            error=ValueError,
            match=r"gamma must be in \[0, inf\), got -1",
            in_constructor=True,
        ),
        ErrorCase(
            args=(a, a),
            kwargs={"beta": 0.0},
            error=ValueError,
            match=r"beta must be a finite number > 0, got 0",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="simpo_loss",
        family=FAMILY,
        formula="-log sigmoid(beta (mean logp_w - mean logp_l) - gamma)",
        functional=_view(PR.simpo_loss, "simpo_loss"),
        module=_module_view(lnn.SimPOLoss),
        reference=R.simpo_loss,
        samples=_simpo_samples,
        error_cases=_simpo_errors,
        grad_args=(0, 1),
        tolerances=TIGHT,
    )
)


def _cpo_samples(g: torch.Generator) -> list[Sample]:
    def two(n: int = 5):
        return _logps(g, n, low=-30.0, high=-1.0), _logps(g, n, low=-30.0, high=-1.0)

    return [
        Sample(args=(*two(), rand(g, 5, low=0.5, high=2.0)), desc="sigmoid + per-pair NLL"),
        Sample(
            args=(*two(), rand(g, 1, high=2.0).reshape(())),
            kwargs={"loss_type": "hinge", "beta": 0.03, "cpo_alpha": 0.5},
            desc="hinge + scalar NLL",
        ),
        Sample(args=two(), kwargs={"loss_type": "ipo", "beta": 0.5}, desc="ipo, no NLL"),
        Sample(
            args=two(),
            kwargs={"loss_type": "simpo", "beta": 0.2, "simpo_gamma": 0.3, "label_smoothing": 0.1},
            desc="simpo",
        ),
    ]


def _cpo_errors() -> list[ErrorCase]:
    a = torch.full((3,), -5.0)
    return [
        ErrorCase(
            args=(a, a, torch.ones(2)),
            kwargs={},
            error=ValueError,
            match=r"chosen_nll must be a scalar or have the shape of policy_chosen_logps \(3,\)",
        ),
        ErrorCase(
            args=(a, a),
            kwargs={"loss_type": "ipo", "label_smoothing": 0.2},
            error=ValueError,
            match=r"has no effect with loss_type='ipo'",
            in_constructor=True,
        ),
        ErrorCase(
            args=(a, a),
            kwargs={"cpo_alpha": -1.0},
            error=ValueError,
            match=r"cpo_alpha must be in \[0, inf\)",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="cpo_loss",
        family=FAMILY,
        formula="-log sigmoid(beta (logp_w - logp_l)) + alpha NLL(y_w)",
        functional=_view(PR.cpo_loss, "cpo_loss"),
        module=_module_view(lnn.CPOLoss),
        reference=R.cpo_loss,
        samples=_cpo_samples,
        error_cases=_cpo_errors,
        grad_args=(0, 1),
        tolerances=TIGHT,
    )
)


def _orpo_samples(g: torch.Generator) -> list[Sample]:
    def two(n: int = 6):
        return _logps(g, n, low=-4.0, high=-0.05), _logps(g, n, low=-4.0, high=-0.05)

    return [
        Sample(args=two(), desc="odds-ratio term only"),
        Sample(args=(*two(), rand(g, 6, low=0.3, high=3.0)), kwargs={"beta": 0.25}, desc="+ NLL"),
        Sample(
            args=(_logps(g, 4, low=-1e-3, high=-1e-4), _logps(g, 4, low=-9.0, high=-5.0)),
            desc="chosen log-probs near 0",
        ),
    ]


def _orpo_errors() -> list[ErrorCase]:
    a = torch.full((3,), -1.0)
    return [
        ErrorCase(
            args=(torch.tensor([-1.0, 0.0, -2.0]), a),
            kwargs={},
            error=ValueError,
            match=r"policy_chosen_logps must hold log-probabilities < 0.*found 0\.0",
        ),
        ErrorCase(args=(a, a[:1]), kwargs={}, error=ValueError, match=r"size \(1,\)"),
        ErrorCase(
            args=(a, a),
            kwargs={"beta": float("inf")},
            error=ValueError,
            match=r"beta must be a finite number > 0",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="orpo_loss",
        family=FAMILY,
        formula="NLL(y_w) - lambda log sigmoid(log odds(y_w) - log odds(y_l))",
        functional=_view(PR.orpo_loss, "orpo_loss"),
        module=_module_view(lnn.ORPOLoss),
        reference=R.orpo_loss,
        samples=_orpo_samples,
        error_cases=_orpo_errors,
        grad_args=(0, 1),
        tolerances=TIGHT,
    )
)


# ---------------------------------------------------------------- KTO


def _kto_samples(g: torch.Generator) -> list[Sample]:
    def three(n: int = 7):
        good = randint(g, 2, n).bool()
        good[0], good[1] = True, False
        return _logps(g, n), _logps(g, n), good

    return [
        Sample(args=(*three(), torch.tensor(0.4, dtype=torch.float64)), desc="kto, tensor KL"),
        Sample(
            args=(*three(), 1.5),
            kwargs={"beta": 0.3, "desirable_weight": 1.33, "undesirable_weight": 0.7},
            desc="kto, float KL, weights",
        ),
        Sample(
            args=three(),
            kwargs={"loss_type": "apo_zero_unpaired", "beta": 0.2},
            desc="apo_zero_unpaired",
        ),
    ]


def _kto_errors() -> list[ErrorCase]:
    a, good = torch.full((3,), -5.0), torch.tensor([True, False, True])
    return [
        ErrorCase(
            args=(a, a, good.float(), 0.1),
            kwargs={},
            error=TypeError,
            match=r"desirable must be a bool tensor.*torch.float32",
        ),
        ErrorCase(
            args=(a, a, good),
            kwargs={},
            error=ValueError,
            match=r"kl \(the KL baseline z0.*\) is required for loss_type='kto'",
        ),
        ErrorCase(
            args=(a, a, good, torch.zeros(3)),
            kwargs={},
            error=ValueError,
            match=r"kl must be a 0-D tensor or a float, got shape \(3,\)",
        ),
        ErrorCase(
            args=(a, a, good, 0.1),
            kwargs={"undesirable_weight": -1.0},
            error=ValueError,
            match=r"undesirable_weight must be in \[0, inf\)",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="kto_loss",
        family=FAMILY,
        formula="w_y (1 - sigmoid(beta (+-)(log pi/pi_ref - z0)))",
        functional=_view(PR.kto_loss, "kto_loss"),
        module=_module_view(lnn.KTOLoss),
        reference=R.kto_loss,
        samples=_kto_samples,
        error_cases=_kto_errors,
        grad_args=(0, 1),
        tolerances=TIGHT,
    )
)


# ---------------------------------------------------------------- GRPO


def _grpo_call(logps, old_logps, advantages, mask, ref_logps=None, normalizer=None, **kwargs):
    return P.grpo_loss(
        logps, old_logps, advantages, mask, ref_logps=ref_logps, normalizer=normalizer, **kwargs
    )


_grpo_call.backends = P.grpo_loss.backends


def _grpo_reference(logps, old_logps, advantages, mask, ref_logps=None, normalizer=None, **kw):
    kw.pop("reduction", None)
    return R.grpo_loss(
        logps, old_logps, advantages, mask, ref_logps=ref_logps, normalizer=normalizer, **kw
    )


def _grpo_samples(g: torch.Generator) -> list[Sample]:
    def batch(b: int = 3, t: int = 5):
        logps = _logps(g, b, t, low=-3.0, high=-0.1)
        old = logps + randn(g, b, t, scale=0.3)  # some ratios outside [0.8, 1.2]
        mask = torch.rand(b, t, generator=g) < 0.7
        mask[:, 0] = True
        return logps, old, randn(g, b), mask

    lp, old, adv, mask = batch()
    samples = [
        Sample(args=(lp, old, adv, mask), desc="grpo, token level"),
        Sample(args=batch(), kwargs={"loss_type": "bnpo", "epsilon": 0.1}, desc="bnpo"),
        Sample(
            args=batch(),
            kwargs={"loss_type": "dr_grpo", "max_completion_length": 8},
            desc="dr_grpo, L = 8",
        ),
        Sample(
            args=batch(), kwargs={"loss_type": "dapo", "epsilon_high": 0.28}, desc="dapo, clip-high"
        ),
        Sample(
            args=(*batch(), _logps(g, 3, 5, low=-3.0, high=-0.1)),
            kwargs={"beta": 0.04},
            desc="grpo + KL",
        ),
        Sample(
            args=batch(), kwargs={"importance_sampling": "sequence"}, desc="sequence level (GSPO)"
        ),
        Sample(
            args=(*batch(), None, 40.0),
            kwargs={"loss_type": "dapo"},
            desc="dapo, normalizer passed in",
        ),
    ]
    lp, old, _, mask = batch()
    samples.append(Sample(args=(lp, old, randn(g, 3, 5), mask), desc="(B, T) advantages"))
    return samples


def _grpo_errors() -> list[ErrorCase]:
    lp = torch.full((2, 3), -1.0)
    adv, mask = torch.ones(2), torch.ones(2, 3, dtype=torch.bool)
    return [
        ErrorCase(
            args=(lp, lp, adv, mask.float()),
            kwargs={},
            error=TypeError,
            match=r"mask must be a bool tensor.*got dtype torch.float32",
        ),
        ErrorCase(
            args=(lp, lp[:, :2], adv, mask),
            kwargs={},
            error=ValueError,
            match=r"old_logps must have the shape of logps \(2, 3\), got \(2, 2\)",
        ),
        ErrorCase(
            args=(lp, lp, torch.ones(3), mask),
            kwargs={},
            error=ValueError,
            match=r"advantages must be \(B,\) = \(2,\) or \(B, T\)",
        ),
        ErrorCase(
            args=(lp, lp, adv, mask),
            kwargs={"beta": 0.1},
            error=ValueError,
            match=r"beta=0\.1 needs ref_logps",
        ),
        ErrorCase(
            args=(lp, lp, adv, mask),
            kwargs={"beta": -0.1},
            error=ValueError,
            match=r"beta must be a finite number >= 0, got -0\.1",
            in_constructor=True,
        ),
        ErrorCase(
            args=(lp, lp, adv, mask),
            kwargs={"loss_type": "ppo"},
            error=ValueError,
            match=r"loss_type must be one of \('grpo', 'bnpo', 'dr_grpo', 'dapo'\), got 'ppo'",
            in_constructor=True,
        ),
        ErrorCase(
            args=(lp, lp, adv, mask),
            kwargs={"max_completion_length": 16},
            error=ValueError,
            match=r"max_completion_length is only used by loss_type='dr_grpo'",
            in_constructor=True,
        ),
        ErrorCase(
            args=(lp, lp, adv, mask, None, -2.0),
            kwargs={},
            error=ValueError,
            match=r"normalizer must be a finite number > 0, got -2\.0",
        ),
    ]


register(
    LossInfo(
        name="grpo_loss",
        family=FAMILY,
        formula="-min(w A, clip(w, 1-eps, 1+eps_high) A) + beta KL, normalised per loss_type",
        functional=_view(_grpo_call, "grpo_loss", ("mean",), passes_reduction=False),
        module=_module_view(lnn.GRPOLoss, ("mean",), passes_reduction=False),
        reference=_grpo_reference,
        samples=_grpo_samples,
        error_cases=_grpo_errors,
        reductions=("mean",),
        grad_args=(0,),
        tolerances=TIGHT,
    )
)


# ---------------------------------------------------------------- token log-probabilities


def _token_logprobs_view(hidden_states, lm_head_weight, tokens, lm_head_bias=None, *,
                         reduction="none", **kwargs):  # fmt: skip
    """log p(token) (plus the entropy with ``return_entropy``), reduced."""
    reduction = check_reduction(reduction)
    out = LP.token_logprobs(hidden_states, lm_head_weight, tokens, lm_head_bias=lm_head_bias,
                            **kwargs)  # fmt: skip
    return reduce(out[0] + out[1] if isinstance(out, tuple) else out, reduction)


_token_logprobs_view.backends = LP.token_logprobs.backends


def _token_logprobs_reference(hidden_states, lm_head_weight, tokens, lm_head_bias=None, *,
                              reduction="none", chunk_size=None, **kwargs):  # fmt: skip
    from ..reference._common import reduce as np_reduce

    out = R.token_logprobs(hidden_states, lm_head_weight, tokens, lm_head_bias=lm_head_bias,
                           **kwargs)  # fmt: skip
    return np_reduce(out[0] + out[1] if isinstance(out, tuple) else out, reduction)


class _TokenLogProbsView(torch.nn.Module):
    def __init__(self, reduction="none", **kwargs):
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.inner = lnn.TokenLogProbs(**kwargs)

    def forward(self, *args):
        out = self.inner(*args)
        return reduce(out[0] + out[1] if isinstance(out, tuple) else out, self.reduction)


def _token_logprobs_samples(g: torch.Generator) -> list[Sample]:
    def case(v: int = 11, h: int = 4, lead=(2, 3), ignored: bool = True):
        y = randint(g, v, *lead)
        if ignored:
            y = with_ignored(y, g, -100, frac=0.25)
        return randn(g, *lead, h), randn(g, v, h, scale=0.7), y

    return [
        Sample(args=case(), desc="(B, T, H), ignored positions"),
        Sample(args=case(), kwargs={"chunk_size": 4}, desc="several vocabulary blocks"),
        Sample(
            args=case(),
            kwargs={"softcap": 2.0, "temperature": 0.7, "logit_scale": 1.5, "chunk_size": 3},
            desc="softcap, temperature, logit_scale",
        ),
        Sample(
            args=(*case(lead=(5,)), randn(g, 11)),
            kwargs={"return_entropy": True, "chunk_size": 5},
            desc="(N, H) + bias, entropy",
        ),
        Sample(
            args=case(lead=(2, 4)),
            kwargs={"shift": True, "return_entropy": True, "temperature": 1.3, "softcap": 5.0},
            desc="shift, entropy, softcap",
        ),
    ]


def _token_logprobs_errors() -> list[ErrorCase]:
    h, w, y = torch.randn(2, 3, 4), torch.randn(7, 4), torch.randint(7, (2, 3))
    return [
        ErrorCase(
            args=(h, w, y.float()),
            kwargs={},
            error=TypeError,
            match=r"tokens must be an integer tensor of token ids, got dtype torch.float32",
        ),
        ErrorCase(
            args=(h, torch.randn(7, 5), y),
            kwargs={},
            error=ValueError,
            match=r"lm_head_weight must be \(V, H\) with H = 4.*got shape \(7, 5\)",
        ),
        ErrorCase(
            args=(h, w, y[:, :2]),
            kwargs={},
            error=ValueError,
            match=r"tokens must have the shape of hidden_states without its last dimension",
        ),
        ErrorCase(
            args=(h, w, torch.full((2, 3), 7)),
            kwargs={},
            error=IndexError,
            match=r"Target 7 is out of bounds",
        ),
        ErrorCase(
            args=(h, w, y),
            kwargs={"temperature": 0.0},
            error=ValueError,
            match=r"temperature must be a finite number > 0",
            in_constructor=True,
        ),
        ErrorCase(
            args=(h, w, y),
            kwargs={"softcap": -1.0},
            error=ValueError,
            match=r"softcap must be None or a finite number > 0",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="token_logprobs",
        family=FAMILY,
        formula="log softmax(cap(s (h W^T + b)) / T)[token]  (+ entropy)",
        functional=_token_logprobs_view,
        module=_TokenLogProbsView,
        reference=_token_logprobs_reference,
        samples=_token_logprobs_samples,
        error_cases=_token_logprobs_errors,
        reductions=("none", "mean", "sum"),
        grad_args=(0, 1),
        supports_half=False,  # float32 output for half inputs (tested in tests/test_lm_posttraining.py)
        tolerances=TIGHT,
    )
)


# ---------------------------------------------------------------- distillation


def _linear_distill_call(sh, sw, th, tw, labels=None, **kwargs):
    return D.linear_distillation_loss(sh, sw, th, tw, labels=labels, **kwargs)


_linear_distill_call.backends = D.linear_distillation_loss.backends


def _linear_distill_reference(sh, sw, th, tw, labels=None, **kwargs):
    return R.linear_distillation_loss(sh, sw, th, tw, labels=labels, **kwargs)


def _linear_distill_samples(g: torch.Generator) -> list[Sample]:
    def case(lead=(2, 3), v: int = 9):
        return (
            randn(g, *lead, 4), randn(g, v, 4, scale=0.8), randn(g, *lead, 5),
            randn(g, v, 5, scale=0.8),
        )  # fmt: skip

    labels = with_ignored(randint(g, 9, 2, 3), g, -100, frac=0.3)
    labels[0, 0] = 1
    return [
        Sample(args=case(), desc="forward KL"),
        Sample(args=case(), kwargs={"divergence": "reverse_kl", "temperature": 2.0}, desc="rkl"),
        Sample(args=(*case(), labels), kwargs={"divergence": "jsd", "beta": 0.3}, desc="jsd"),
        Sample(
            args=(*case(), labels),
            kwargs={"divergence": "tvd", "hard_weight": 0.4, "temperature": 1.5},
            desc="tvd + hard CE",
        ),
        Sample(args=case(lead=(5,)), kwargs={"hard_weight": 0.0}, desc="(N, H)"),
    ]


def _linear_distill_errors() -> list[ErrorCase]:
    hs, ws, ht, wt = torch.randn(3, 4), torch.randn(9, 4), torch.randn(3, 5), torch.randn(9, 5)
    return [
        ErrorCase(
            args=(hs, ws, ht, torch.randn(8, 5)),
            kwargs={},
            error=ValueError,
            match=r"teacher_weight must be \(V, H_t\) with V = 9",
        ),
        ErrorCase(
            args=(hs, ws, ht[:2], wt),
            kwargs={},
            error=ValueError,
            match=r"teacher_hidden must have the leading shape of student_hidden \(3,\)",
        ),
        ErrorCase(
            args=(hs, ws, ht, wt),
            kwargs={"divergence": "js"},
            error=ValueError,
            match=r"divergence must be one of \('kl', 'reverse_kl', 'jsd', 'tvd'\), got 'js'",
            in_constructor=True,
        ),
        ErrorCase(
            args=(hs, ws, ht, wt),
            kwargs={"divergence": "jsd", "beta": 1.0},
            error=ValueError,
            match=r"beta must be in \(0, 1\) for divergence='jsd'",
            in_constructor=True,
        ),
        ErrorCase(
            args=(hs, ws, ht, wt),
            kwargs={"hard_weight": 1.5},
            error=ValueError,
            match=r"hard_weight must be in \[0, 1\]",
            in_constructor=True,
        ),
        ErrorCase(
            args=(hs, ws, ht, wt),
            kwargs={"hard_weight": 0.5},
            error=ValueError,
            match=r"hard_weight=0\.5 needs labels",
        ),
    ]


register(
    LossInfo(
        name="linear_distillation_loss",
        family=FAMILY,
        formula="D(softmax(h_s W_s^T / T), softmax(h_t W_t^T / T)), D = KL | rKL | JSD | TVD",
        functional=_linear_distill_call,
        module=lnn.LinearDistillationLoss,
        reference=_linear_distill_reference,
        samples=_linear_distill_samples,
        error_cases=_linear_distill_errors,
        grad_args=(0, 1),
        tolerances=TIGHT,
    )
)


def _topk_call(z, lt, ids, labels=None, student_weight=None, **kwargs):
    return D.topk_distillation_loss(
        z, lt, ids, labels=labels, student_weight=student_weight, **kwargs
    )


_topk_call.backends = D.topk_distillation_loss.backends


def _topk_reference(z, lt, ids, labels=None, student_weight=None, **kwargs):
    import numpy as np

    if student_weight is not None:
        z = np.asarray(z) @ np.asarray(student_weight).T
    return R.topk_distillation_loss(z, lt, ids, labels=labels, **kwargs)


def _topk_samples(g: torch.Generator) -> list[Sample]:
    def teacher(lead, v: int = 10, k: int = 3):
        top = torch.log_softmax(randn(g, *lead, v, scale=2.0), -1).topk(k)
        return top.values, top.indices

    labels = with_ignored(randint(g, 10, 2, 3), g, -100, frac=0.3)
    labels[0, 0] = 2
    return [
        Sample(args=(randn(g, 2, 3, 10), *teacher((2, 3))), desc="logits, kl"),
        Sample(
            args=(randn(g, 2, 3, 10), *teacher((2, 3), k=5), labels),
            kwargs={"divergence": "jsd", "beta": 0.4, "temperature": 1.5},
            desc="jsd, labels",
        ),
        Sample(
            args=(randn(g, 4, 10), *teacher((4,), k=1)),
            kwargs={"divergence": "reverse_kl"},
            desc="k = 1, reverse KL",
        ),
        Sample(
            args=(randn(g, 4, 6), *teacher((4,), k=4), None, randn(g, 10, 6, scale=0.5)),
            kwargs={"divergence": "tvd"},
            desc="hidden states + student_weight, tvd",
        ),
    ]


def _topk_errors() -> list[ErrorCase]:
    z = torch.randn(3, 10)
    top = torch.log_softmax(torch.randn(3, 10), -1).topk(2)
    return [
        ErrorCase(
            args=(z, top.values, top.indices[:, :1]),
            kwargs={},
            error=ValueError,
            match=r"teacher_topk_logprobs and teacher_topk_ids must both be",
        ),
        ErrorCase(
            args=(z, top.values, top.indices.float()),
            kwargs={},
            error=TypeError,
            match=r"teacher_topk_ids must be an integer tensor",
        ),
        ErrorCase(
            args=(z, top.values, top.indices + 10),
            kwargs={},
            error=IndexError,
            match=r"out of bounds",
        ),
        ErrorCase(
            args=(z, top.values, top.indices),
            kwargs={"temperature": -1.0},
            error=ValueError,
            match=r"temperature must be a finite number > 0",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="topk_distillation_loss",
        family=FAMILY,
        formula="D over k+1 buckets (teacher top-k tokens + the rest) of student vs teacher",
        functional=_topk_call,
        module=lnn.TopKDistillationLoss,
        reference=_topk_reference,
        samples=_topk_samples,
        error_cases=_topk_errors,
        grad_args=(0,),
        tolerances=TIGHT,
    )
)
