"""Registry entry of the CTC loss.

Samples hold real log-probabilities (``log_softmax`` of random numbers), so the finite
differences of the reference w.r.t. ``log_probs`` are the true gradient, which losskit computes
with ``exact_grad=True``: the samples ask for it. torch's CTC backward (losskit's default) is not
that gradient (see :func:`losskit.ctc_loss`), hence ``torch_grad_parity=False``;
``tests/test_ctc.py`` checks the default against torch (values and gradients) and compares
gradients w.r.t. logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as TF

from .. import nn as lnn
from .. import reference as R
from .. import sequence as F
from .._registry import ErrorCase, LossInfo, Sample, register
from ._make import randint, randn

_HALVES = (torch.float16, torch.bfloat16)


def _torch_ctc(log_probs: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """torch's CTC loss. Its CPU kernel has no float16/bfloat16, so those dtypes run in float32
    (as losskit computes them) and the result is rounded back. ``exact_grad`` is losskit's."""
    kwargs.pop("exact_grad", None)
    if log_probs.dtype in _HALVES:
        return TF.ctc_loss(log_probs.float(), *args, **kwargs).to(log_probs.dtype)
    return TF.ctc_loss(log_probs, *args, **kwargs)


def _log_probs(g: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return (randn(g, *shape) * scale).log_softmax(-1)


def _labels(g: torch.Generator, classes: int, blank: int, *shape: int) -> torch.Tensor:
    """Random labels in ``[0, classes)`` that avoid ``blank``."""
    labels = randint(g, classes - 1, *shape)
    return labels + (labels >= blank).long()


def _ctc_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(
            args=s.args,
            kwargs={**s.kwargs, "exact_grad": True},
            desc=s.desc,
            ref_kwargs=s.ref_kwargs,
            torch_kwargs=s.torch_kwargs,
        )
        for s in _plain_ctc_samples(g)
    ]


def _plain_ctc_samples(g: torch.Generator) -> list[Sample]:
    padded = _labels(g, 5, 0, 3, 3)
    padded[1, 2:] = 0  # padding beyond target_lengths is never read (0 = blank here)
    padded[2, 1:] = 0
    return [
        Sample(
            args=(_log_probs(g, 6, 3, 5), padded, (6, 5, 4), (3, 2, 1)),
            desc="padded (N,S) targets, tuple lengths",
        ),
        Sample(
            args=(
                _log_probs(g, 5, 3, 4),
                _labels(g, 4, 0, 5),
                torch.tensor([5, 4, 5], dtype=torch.int32),
                torch.tensor([2, 1, 2], dtype=torch.int32),
            ),
            desc="concatenated 1-D targets, int32 length tensors",
        ),
        Sample(
            args=(_log_probs(g, 6, 2, 4), torch.tensor([[1, 1, 2], [0, 0, 2]]), [6, 5], [3, 2]),
            kwargs={"blank": 3},
            desc="blank=C-1, repeated labels",
        ),
        Sample(
            args=(_log_probs(g, 6, 5), _labels(g, 5, 2, 3), torch.tensor(6), torch.tensor(3)),
            kwargs={"blank": 2},
            desc="unbatched (T,C), targets (S,), 0-D lengths",
        ),
        Sample(
            args=(_log_probs(g, 5, 4), _labels(g, 4, 0, 1, 3), [4], [2]),
            desc="unbatched (T,C), padded targets (1,S)",
        ),
        Sample(
            args=(
                _log_probs(g, 4, 3, 4),
                torch.tensor([[1, 1, 2], [1, 2, 3], [2, 0, 0]]),
                (4, 2, 4),
                (3, 3, 1),
            ),
            kwargs={"zero_infinity": True},
            desc="zero_infinity, sample 1 impossible",
        ),
        Sample(
            args=(
                _log_probs(g, 5, 3, 3),
                torch.tensor([[1, 2], [2, 1], [1, 1]]),
                (5, 3, 0),
                (0, 2, 0),
            ),
            desc="empty target, input length 0",
        ),
    ]


def _ctc_errors() -> list[ErrorCase]:
    lp = torch.randn(5, 2, 4).log_softmax(2)
    tg = torch.tensor([[1, 2], [3, 3]])
    lens = ((5, 5), (2, 2))
    return [
        ErrorCase(
            args=(lp.long(), tg, *lens),
            kwargs={},
            error=TypeError,
            match=r"log_probs must be a floating.*int64",
        ),
        ErrorCase(
            args=(lp.unsqueeze(0), tg, *lens),
            kwargs={},
            error=ValueError,
            match=r"log_probs must be 2-D or 3-D.*4-D",
        ),
        ErrorCase(
            args=(lp, tg.float(), *lens),
            kwargs={},
            error=TypeError,
            match=r"targets must be an integer.*float32",
        ),
        ErrorCase(
            args=(lp, tg.bool(), *lens),
            kwargs={},
            error=TypeError,
            match=r"targets must be an integer.*bool",
        ),
        ErrorCase(
            args=(lp, tg, *lens),
            kwargs={"blank": 4},
            error=ValueError,
            match=r"blank must be in label range \[0, 4\).*4",
        ),
        ErrorCase(
            args=(lp, tg, *lens),
            kwargs={"blank": -1},
            error=ValueError,
            match=r"blank.*blank=-1",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(lp, tg, *lens),
            kwargs={"blank": 1.0},
            error=TypeError,
            match=r"blank must be an int",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(lp, tg, *lens),
            kwargs={"zero_infinity": 1},
            error=TypeError,
            match=r"zero_infinity must be a bool",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(lp, torch.tensor([[1, 2], [7, 3]]), *lens),
            kwargs={},
            error=IndexError,
            match=r"Target 7 is out of bounds.*4",
        ),
        ErrorCase(
            args=(lp, torch.tensor([[1, 2], [3, 0]]), *lens),
            kwargs={},
            error=ValueError,
            match=r"targets must not contain the blank index 0.*sample 1",
        ),
        ErrorCase(
            args=(lp, tg, (5, 6), (2, 2)),
            kwargs={},
            error=ValueError,
            match=r"input_lengths.*at most 5, but got value 6",
        ),
        ErrorCase(
            args=(lp, tg, (5, 5), (3, 2)),
            kwargs={},
            error=ValueError,
            match=r"target_lengths.*at most 2, but got value 3",
        ),
        ErrorCase(
            args=(lp, tg, (5, -1), (2, 2)),
            kwargs={},
            error=ValueError,
            match=r"input_lengths.*at least 0, but got value -1",
        ),
        ErrorCase(
            args=(lp, tg, (5, 5), (2, -2)),
            kwargs={},
            error=ValueError,
            match=r"target_lengths.*at least 0.*value -2",
        ),
        ErrorCase(
            args=(lp, tg, torch.tensor([5.0, 5.0]), (2, 2)),
            kwargs={},
            error=TypeError,
            match=r"input_lengths must be an integer tensor.*float32",
        ),
        ErrorCase(
            args=(lp, tg, 5, (2, 2)),
            kwargs={},
            error=TypeError,
            match=r"input_lengths must be an integer tensor or a tuple",
        ),
        ErrorCase(
            args=(lp, tg, (5, 5), (2.0, 2)),
            kwargs={},
            error=TypeError,
            match=r"target_lengths must hold ints",
        ),
        ErrorCase(
            args=(lp, tg, (5, 5, 5), (2, 2)),
            kwargs={},
            error=ValueError,
            match=r"input_lengths must have one entry per batch element \(N=2\), got 3",
        ),
        ErrorCase(
            args=(lp, torch.ones(3, 2, dtype=torch.long), *lens),
            kwargs={},
            error=ValueError,
            match=r"targets of shape \(3, 2\) has batch size 3, expected N=2",
        ),
        ErrorCase(
            args=(lp, torch.tensor([1, 2, 3]), *lens),
            kwargs={},
            error=ValueError,
            match=r"sum\(target_lengths\) = 4.*shape \(3,\)",
        ),
        ErrorCase(
            args=(lp, tg.unsqueeze(0), *lens),
            kwargs={},
            error=ValueError,
            match=r"targets must be 1-D or 2-D.*3-D",
        ),
    ]


def _ctc_edges(g: torch.Generator) -> list[Sample]:
    repeated = torch.tensor([[1, 1, 0], [1, 2, 3]])
    return [
        Sample(
            args=(_log_probs(g, 4, 2, 3), torch.tensor([[1, 2], [2, 2]]), (4, 3), (0, 0)),
            desc="empty targets (length 0)",
        ),
        Sample(
            args=(_log_probs(g, 3, 2, 4), repeated, (3, 3), (2, 3)),
            desc="repeated labels need a blank: [1,1] in 3 frames, [1,2,3] in 3",
        ),
        Sample(
            args=(_log_probs(g, 3, 2, 4), repeated, (2, 2), (2, 3)),
            desc="impossible alignments: inf",
        ),
        Sample(
            args=(_log_probs(g, 3, 2, 4), repeated, (2, 3), (2, 3)),
            kwargs={"zero_infinity": True},
            desc="impossible alignment, zero_infinity",
        ),
        Sample(
            args=(_log_probs(g, 3, 2, 3), torch.tensor([[1], [2]]), (0, 0), (0, 1)),
            desc="input length 0",
        ),
        Sample(
            args=(
                _log_probs(g, 6, 2, 4, scale=1e4),
                torch.tensor([[1, 2], [3, 3]]),
                (6, 6),
                (2, 2),
            ),
            desc="peaked log-probs (log_softmax of logits ~1e4)",
        ),
        Sample(
            args=(
                torch.cat([_log_probs(g, 5, 2, 3), torch.full((5, 2, 1), float("-inf"))], dim=2),
                torch.tensor([[1, 2], [2, 2]]),
                (5, 5),
                (2, 1),
            ),
            desc="log-probs with a -inf class never in the targets",
        ),
    ]


def _ctc_random(g: torch.Generator, n: int, c: int) -> Sample:
    c = max(c, 2)
    blank = int(randint(g, c, 1))
    s = int(randint(g, 4, 1))
    targets = _labels(g, c, blank, n, s)
    tg_lens = randint(g, s + 1, n)
    # The fewest frames an alignment needs: one per label plus a blank between equal neighbours.
    repeats = (targets[:, 1:] == targets[:, :-1]) & (
        torch.arange(1, s) < tg_lens.unsqueeze(1) if s > 1 else torch.zeros(n, 0, dtype=torch.bool)
    )
    needed = tg_lens + repeats.sum(1)
    t = int(needed.max()) + 2 if n else 2
    in_lens = needed + randint(g, 3, n)
    kwargs = {"blank": blank, "zero_infinity": bool(randint(g, 2, 1))}
    return Sample(
        args=(_log_probs(g, t, n, c), targets, in_lens.clamp_max(t), tg_lens),
        kwargs=kwargs,
        desc=f"random n={n} c={c} s={s} t={t}",
    )


register(
    LossInfo(
        name="ctc_loss",
        family="sequence",
        formula="-log sum_{alignments pi -> y} prod_t p_t(pi_t)  (alpha recursion)",
        functional=F.ctc_loss,
        module=lnn.CTCLoss,
        reference=R.ctc_loss,
        reference_grad=R.ctc_loss_grad,
        torch_functional=_torch_ctc,
        samples=_ctc_samples,
        error_cases=_ctc_errors,
        edge_samples=_ctc_edges,
        random_sample=_ctc_random,
        # torch's backward returns exp(log_probs) - posterior, not d loss / d log_probs.
        torch_grad_parity=False,
    )
)
