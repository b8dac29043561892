"""Registry entries of the ranking and margin losses.

Samples draw continuous random inputs, so no hinge sits exactly at its kink (a measure-zero set
where the derivative is not defined and finite differences of the reference would disagree).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as TF

from .. import nn as lnn
from .. import ranking as F
from .. import reference as R
from .._registry import ErrorCase, LossInfo, Sample, register
from ._make import rand, randint, randn, signs

F64 = torch.float64
_HALVES = (torch.float16, torch.bfloat16)


def _torch_in_float32(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``fn`` for float16/bfloat16 inputs through float32 (torch's CPU kernel has no half version).

    The oracle then sees exactly the rounded half inputs, computes in float32 as we do, and rounds
    its result back to the input's dtype.
    """

    @functools.wraps(fn)
    def wrapped(input: torch.Tensor, target: torch.Tensor, **kwargs) -> torch.Tensor:
        if input.dtype not in _HALVES:
            return fn(input, target, **kwargs)
        if kwargs.get("weight") is not None:
            kwargs["weight"] = kwargs["weight"].float()
        return fn(input.float(), target, **kwargs).to(input.dtype)

    return wrapped


def _t(values, dtype=F64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def _scalar(g: torch.Generator) -> torch.Tensor:
    """A 0-D standard normal sample."""
    return randn(g, 1).reshape(())


# ---------------------------------------------------------------- margin ranking


def _mr_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(randn(g, 8), randn(g, 8), signs(g, 8)), desc="(N,), margin 0"),
        Sample(
            args=(randn(g, 8), randn(g, 8), signs(g, 8)), kwargs={"margin": 0.5}, desc="margin 0.5"
        ),
        Sample(
            args=(randn(g, 6), randn(g, 6), signs(g, 6)),
            kwargs={"margin": -0.3},
            desc="negative margin",
        ),
        Sample(
            args=(randn(g, 3, 4), randn(g, 3, 4), signs(g, 3, 4)),
            kwargs={"margin": 0.2},
            desc="2-D",
        ),
        Sample(
            args=(_scalar(g), _scalar(g), _t(-1.0)), kwargs={"margin": 1.0}, desc="0-D (no batch)"
        ),
        Sample(
            args=(randn(g, 6), randn(g, 6), randint(g, 2, 6) * 2 - 1),
            kwargs={"margin": 0.1},
            desc="int64 target",
        ),
    ]


def _mr_errors() -> list[ErrorCase]:
    x = torch.randn(4)
    y = torch.tensor([1.0, -1.0, 1.0, -1.0])
    return [
        ErrorCase(
            args=(x, x[:3], y),
            kwargs={},
            error=ValueError,
            match=r"input2 size \(3,\).*input1 size \(4,\)",
        ),
        ErrorCase(
            args=(x, x, y[:2]),
            kwargs={},
            error=ValueError,
            match=r"target size \(2,\).*input1 size \(4,\)",
        ),
        ErrorCase(
            args=(x.long(), x, y),
            kwargs={},
            error=TypeError,
            match=r"input1 must be a floating.*int64",
        ),
        ErrorCase(
            args=(x, x, y > 0),
            kwargs={},
            error=TypeError,
            match=r"target must be a floating or integer.*bool",
        ),
        ErrorCase(
            args=(x, x, y),
            kwargs={"margin": float("nan")},
            error=ValueError,
            match=r"margin must not be NaN",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, x, y),
            kwargs={"margin": "1"},
            error=TypeError,
            match=r"margin must be a real number, got str",
            in_constructor=True,
        ),
        ErrorCase(
            args=([1.0], x, y),
            kwargs={},
            error=TypeError,
            match=r"input1 must be a torch.Tensor, got list",
        ),
    ]


def _mr_edges(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(randn(g, 0), randn(g, 0), randn(g, 0)), desc="empty batch"),
        Sample(
            args=(_t([1e4, -1e4, 1e4, 0.0]), _t([-1e4, 1e4, 1e4, 5.0]), _t([1.0, 1.0, -1.0, -1.0])),
            kwargs={"margin": 0.5},
            desc="scores ±1e4",
        ),
    ]


register(
    LossInfo(
        name="margin_ranking_loss",
        family="ranking",
        formula="max(0, -y (x1 - x2) + margin)",
        functional=F.margin_ranking_loss,
        module=lnn.MarginRankingLoss,
        reference=R.margin_ranking_loss,
        torch_functional=TF.margin_ranking_loss,
        samples=_mr_samples,
        error_cases=_mr_errors,
        edge_samples=_mr_edges,
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n), randn(g, n), signs(g, n)),
            kwargs={"margin": float(rand(g, 1, low=-1, high=1))},
        ),
        grad_args=(0, 1),
    )
)

# ---------------------------------------------------------------- hinge embedding


def _he_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(rand(g, 8, high=2.0), signs(g, 8)), desc="distances, ±1 labels"),
        Sample(
            args=(randn(g, 3, 4, scale=2.0), signs(g, 3, 4)),
            kwargs={"margin": 2.0},
            desc="2-D, margin 2",
        ),
        Sample(
            args=(randn(g, 6), _t([1.0, -1.0, 0.0, 2.0, -2.0, 0.5])),
            kwargs={"margin": 0.5},
            desc="labels other than ±1 get both terms",
        ),
        Sample(args=(rand(g, 5, high=2.0), randint(g, 2, 5) * 2 - 1), desc="int64 labels"),
        Sample(args=(_scalar(g), _t(-1.0)), kwargs={"margin": -0.5}, desc="0-D, negative margin"),
    ]


def _he_errors() -> list[ErrorCase]:
    x = torch.rand(3, 2)
    y = torch.ones(3, 2)
    return [
        ErrorCase(
            args=(x, y[:, :1]),
            kwargs={},
            error=ValueError,
            match=r"target size \(3, 1\).*input size \(3, 2\)",
        ),
        ErrorCase(
            args=(x.int(), y), kwargs={}, error=TypeError, match=r"input must be a floating.*int32"
        ),
        ErrorCase(
            args=(x, y.bool()),
            kwargs={},
            error=TypeError,
            match=r"target must be a floating or integer.*bool",
        ),
        ErrorCase(
            args=(x, y),
            kwargs={"margin": float("nan")},
            error=ValueError,
            match=r"margin must not be NaN",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, y),
            kwargs={"margin": None},
            error=TypeError,
            match=r"margin must be a real number",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="hinge_embedding_loss",
        family="ranking",
        formula="[y != 1] max(0, margin - x) + [y != -1] x",
        functional=F.hinge_embedding_loss,
        module=lnn.HingeEmbeddingLoss,
        reference=R.hinge_embedding_loss,
        torch_functional=TF.hinge_embedding_loss,
        samples=_he_samples,
        error_cases=_he_errors,
        edge_samples=lambda g: [
            Sample(args=(randn(g, 0), randn(g, 0)), desc="empty"),
            Sample(
                args=(_t([1e4, -1e4, 1e4, -1e4, 3.0]), _t([1.0, 1.0, -1.0, -1.0, 0.0])),
                desc="inputs ±1e4",
            ),
        ],
        random_sample=lambda g, n, c: Sample(
            args=(rand(g, n, c, high=3.0), signs(g, n, c)),
            kwargs={"margin": float(rand(g, 1, high=2.0))},
        ),
    )
)

# ---------------------------------------------------------------- soft margin


def _sm_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(randn(g, 3, 4, scale=2.0), signs(g, 3, 4)), desc="±1 labels"),
        Sample(args=(randn(g, 6), _t([1.0, -1.0, 0.5, 2.0, 0.0, -3.0])), desc="other label values"),
        Sample(args=(randn(g, 5), randint(g, 2, 5) * 2 - 1), desc="int64 labels"),
        Sample(args=(randn(g, 8, scale=30.0), signs(g, 8)), desc="large scores"),
    ]


def _sm_errors() -> list[ErrorCase]:
    x = torch.randn(3, 4)
    y = torch.ones(3, 4)
    return [
        ErrorCase(
            args=(x, y[0]),
            kwargs={},
            error=ValueError,
            match=r"target size \(4,\).*input size \(3, 4\)",
        ),
        ErrorCase(
            args=(x.long(), y), kwargs={}, error=TypeError, match=r"input must be a floating.*int64"
        ),
        ErrorCase(
            args=(x, y.bool()),
            kwargs={},
            error=TypeError,
            match=r"target must be a floating or integer.*bool",
        ),
        ErrorCase(
            args=(x, y),
            kwargs={"reduction": "batchmean"},
            error=ValueError,
            match=r"'batchmean' is not a valid",
        ),
    ]


register(
    LossInfo(
        name="soft_margin_loss",
        family="ranking",
        formula="log(1 + exp(-y x)), computed as -logsigmoid(y x)",
        functional=F.soft_margin_loss,
        module=lnn.SoftMarginLoss,
        reference=R.soft_margin_loss,
        torch_functional=TF.soft_margin_loss,
        samples=_sm_samples,
        error_cases=_sm_errors,
        edge_samples=lambda g: [
            Sample(args=(randn(g, 0, 3), randn(g, 0, 3)), desc="empty"),
            Sample(
                args=(_t([1e4, -1e4, 1e4, -1e4, 0.0]), _t([1.0, 1.0, -1.0, -1.0, 1.0])),
                desc="scores ±1e4",
            ),
        ],
        random_sample=lambda g, n, c: Sample(args=(randn(g, n, c, scale=3.0), signs(g, n, c))),
        # Where -y x is large torch's log(1 + exp(-y x)) overflows to inf with a NaN gradient;
        # ours stays finite (values are then checked against the reference, gradients in
        # tests/test_ranking_family.py against the closed form).
        edge_grad_parity=False,
    )
)

# ---------------------------------------------------------------- cosine embedding


def _ce_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(randn(g, 5, 4), randn(g, 5, 4), signs(g, 5)), desc="(N, D), margin 0"),
        Sample(
            args=(randn(g, 6, 3), randn(g, 6, 3), signs(g, 6)),
            kwargs={"margin": 0.3},
            desc="margin 0.3",
        ),
        Sample(
            args=(randn(g, 4, 5), randn(g, 4, 5), signs(g, 4)),
            kwargs={"margin": -0.5},
            desc="margin -0.5",
        ),
        Sample(
            args=(randn(g, 4, 3), randn(g, 4, 3), _t([1.0, -1.0, 0.0, 2.0])),
            kwargs={"margin": -0.2},
            desc="labels other than ±1 give 0",
        ),
        Sample(
            args=(randn(g, 5), randn(g, 5), _t(-1.0)),
            kwargs={"margin": -0.9},
            desc="(D,), 0-D target",
        ),
        Sample(
            args=(randn(g, 4, 3), randn(g, 4, 3), randint(g, 2, 4) * 2 - 1), desc="int64 target"
        ),
    ]


def _ce_errors() -> list[ErrorCase]:
    x = torch.randn(4, 3)
    y = torch.tensor([1.0, -1.0, 1.0, -1.0])
    return [
        ErrorCase(
            args=(x, x[:, :2], y),
            kwargs={},
            error=ValueError,
            match=r"input2 size \(4, 2\).*input1 size \(4, 3\)",
        ),
        ErrorCase(
            args=(x, x, y[:3]),
            kwargs={},
            error=ValueError,
            match=r"Expected target size \(4,\).*got \(3,\)",
        ),
        ErrorCase(
            args=(torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.ones(2, 3)),
            kwargs={},
            error=ValueError,
            match=r"input1 must be 1-D or 2-D, got a 3-D tensor",
        ),
        ErrorCase(
            args=(x, x.long(), y),
            kwargs={},
            error=TypeError,
            match=r"input2 must be a floating.*int64",
        ),
        ErrorCase(
            args=(x, x, y.bool()),
            kwargs={},
            error=TypeError,
            match=r"target must be a floating or integer",
        ),
        ErrorCase(
            args=(x, x, y),
            kwargs={"margin": float("nan")},
            error=ValueError,
            match=r"margin must not be NaN",
            in_constructor=True,
        ),
    ]


def _ce_edges(g: torch.Generator) -> list[Sample]:
    v = _t([[1.0, 2.0, -0.5]] * 4)
    other = torch.stack([v[0], -v[0], _t([2.0, -1.0, 0.0]), 3.0 * v[0]])
    return [
        Sample(args=(randn(g, 0, 4), randn(g, 0, 4), randn(g, 0)), desc="empty batch"),
        Sample(
            args=(v, other, _t([1.0, -1.0, -1.0, -1.0])),
            kwargs={"margin": 0.2},
            desc="parallel, antiparallel, orthogonal pairs",
        ),
    ]


register(
    LossInfo(
        name="cosine_embedding_loss",
        family="ranking",
        formula="y=1: 1 - cos(x1, x2); y=-1: max(0, cos(x1, x2) - margin)",
        functional=F.cosine_embedding_loss,
        module=lnn.CosineEmbeddingLoss,
        reference=R.cosine_embedding_loss,
        torch_functional=TF.cosine_embedding_loss,
        samples=_ce_samples,
        error_cases=_ce_errors,
        edge_samples=_ce_edges,
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, c), randn(g, n, c), signs(g, n)),
            kwargs={"margin": float(rand(g, 1, low=-0.5, high=0.5))},
        ),
        grad_args=(0, 1),
    )
)

# ---------------------------------------------------------------- multi margin


def _mm_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(randn(g, 5, 4), randint(g, 4, 5)), desc="p=1, margin 1"),
        Sample(args=(randn(g, 5, 4), randint(g, 4, 5)), kwargs={"p": 2}, desc="p=2"),
        Sample(
            args=(randn(g, 6, 3), randint(g, 3, 6)),
            kwargs={"margin": 0.5, "weight": rand(g, 3, low=0.2, high=2.0)},
            desc="weight, margin 0.5",
        ),
        Sample(
            args=(randn(g, 4, 5), randint(g, 5, 4)),
            kwargs={"p": 2, "margin": 2.0, "weight": rand(g, 5, low=0.2, high=2.0)},
            desc="p=2, weight, margin 2",
        ),
        Sample(
            args=(randn(g, 5), randint(g, 5)),
            kwargs={"margin": -0.2},
            desc="(C,) no batch, margin -0.2",
        ),
        Sample(args=(randn(g, 3, 1), randint(g, 1, 3)), desc="one class (loss 0)"),
    ]


def _mm_errors() -> list[ErrorCase]:
    x = torch.randn(4, 3)
    t = torch.tensor([0, 1, 2, 1])
    return [
        ErrorCase(
            args=(x, torch.tensor([0, 3, 2, 1])),
            kwargs={},
            error=IndexError,
            match=r"Target 3 is out of bounds.*3",
        ),
        ErrorCase(
            args=(x, torch.tensor([0, -1, 2, 1])),
            kwargs={},
            error=IndexError,
            match=r"Target -1 is out of bounds",
        ),
        ErrorCase(
            args=(x, t[:3]),
            kwargs={},
            error=ValueError,
            match=r"Expected target size \(4,\).*got \(3,\)",
        ),
        ErrorCase(
            args=(x, t.double()),
            kwargs={},
            error=TypeError,
            match=r"target must be an integer tensor.*float64",
        ),
        ErrorCase(
            args=(x.long(), t), kwargs={}, error=TypeError, match=r"input must be a floating.*int64"
        ),
        ErrorCase(
            args=(torch.randn(2, 3, 4), t[:2]),
            kwargs={},
            error=ValueError,
            match=r"input must be 1-D or 2-D",
        ),
        ErrorCase(
            args=(torch.randn(4, 0), t),
            kwargs={},
            error=ValueError,
            match=r"at least one class.*\(4, 0\)",
        ),
        ErrorCase(
            args=(x, t),
            kwargs={"p": 3},
            error=ValueError,
            match=r"only p == 1 and p == 2 supported, got p=3",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, t),
            kwargs={"p": "2"},
            error=TypeError,
            match=r"p must be an int.*str",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, t),
            kwargs={"margin": float("nan")},
            error=ValueError,
            match=r"margin must not be NaN",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, t),
            kwargs={"weight": torch.ones(2, 3)},
            error=ValueError,
            match=r"weight must be a 1-D tensor.*got shape \(2, 3\)",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, t),
            kwargs={"weight": torch.ones(4)},
            error=ValueError,
            match=r"weight.*\(3\).*\(4,\)",
        ),
    ]


def _mm_edges(g: torch.Generator) -> list[Sample]:
    return [
        Sample(
            args=(_t([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]]), torch.tensor([1, 0])),
            kwargs={"weight": _t([1.0, 0.5, 2.0])},
            desc="scores ±1e4, p=1",
        ),
        Sample(
            args=(_t([[30.0, -30.0, 0.0], [-30.0, 30.0, 30.0]]), torch.tensor([0, 1])),
            kwargs={"p": 2},
            desc="large scores, p=2",
        ),
    ]


register(
    LossInfo(
        name="multi_margin_loss",
        family="ranking",
        formula="(1/C) sum_{i != y} w_y max(0, margin - x_y + x_i)^p",
        functional=F.multi_margin_loss,
        module=lnn.MultiMarginLoss,
        reference=R.multi_margin_loss,
        torch_functional=_torch_in_float32(TF.multi_margin_loss),
        samples=_mm_samples,
        error_cases=_mm_errors,
        # The empty batch is not compared with torch, which returns uninitialised memory for
        # mean/sum there; tests/test_ranking_family.py checks our NaN / 0.
        edge_samples=_mm_edges,
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, c), randint(g, c, n)),
            kwargs={
                "p": int(randint(g, 2, 1)) + 1,
                "margin": float(rand(g, 1, high=2.0)),
                "weight": rand(g, c, low=0.1, high=2.0),
            },
        ),
    )
)

# ---------------------------------------------------------------- multilabel margin


def _mlm_samples(g: torch.Generator) -> list[Sample]:
    padded = torch.tensor(
        [
            [2, 0, -1, 4, 1],  # targets {2, 0}; entries after -1 ignored
            [1, -1, 3, 3, 3],  # one target
            [-1, 2, 1, 0, 4],  # no target: loss 0
            [0, 1, 2, 3, 4],  # every class a target: no non-target, loss 0
            [3, 3, -1, 0, 0],  # a repeated target counts twice (torch's loop)
            [4, 1, 3, 0, -1],  # four targets
        ]
    )
    return [
        Sample(args=(randn(g, 6, 5), padded), desc="padded targets, duplicates, empty/full rows"),
        Sample(args=(randn(g, 6, 5, scale=0.2), padded), desc="small scores (every hinge active)"),
        Sample(args=(randn(g, 4), torch.tensor([3, 1, -1, 0])), desc="(C,) no batch"),
        Sample(
            args=(randn(g, 3, 4, scale=3.0), torch.tensor([[1, 2, -1, -1]] * 3)),
            desc="large scores",
        ),
    ]


def _mlm_errors() -> list[ErrorCase]:
    x = torch.randn(2, 4)
    t = torch.tensor([[3, 0, -1, 1], [1, -1, 0, 0]])
    return [
        ErrorCase(
            args=(x, torch.tensor([[3, 4, -1, 1], [1, -1, 0, 0]])),
            kwargs={},
            error=IndexError,
            match=r"Target 4 is out of bounds.*\[0, 4\)",
        ),
        ErrorCase(
            args=(x, torch.tensor([[3, -2, 1, 1], [1, -1, 0, 0]])),
            kwargs={},
            error=IndexError,
            match=r"Target -2 is out of bounds",
        ),
        ErrorCase(
            args=(x, torch.tensor([[3, -1, 9, 1], [1, -1, 0, 0]])),
            kwargs={},
            error=IndexError,
            match=r"Target 9 is out of bounds",
        ),
        ErrorCase(
            args=(x, t[:, :3]),
            kwargs={},
            error=ValueError,
            match=r"Expected target size \(2, 4\).*got \(2, 3\)",
        ),
        ErrorCase(
            args=(x, t.double()),
            kwargs={},
            error=TypeError,
            match=r"target must be an integer tensor.*float64",
        ),
        ErrorCase(
            args=(x.long(), t), kwargs={}, error=TypeError, match=r"input must be a floating.*int64"
        ),
        ErrorCase(
            args=(torch.randn(2, 2, 2), t.view(2, 2, 2)),
            kwargs={},
            error=ValueError,
            match=r"input must be 1-D or 2-D",
        ),
    ]


register(
    LossInfo(
        name="multilabel_margin_loss",
        family="ranking",
        formula="(1/C) sum_{j in T} sum_{i not in T} max(0, 1 - (x_j - x_i)), T = targets before -1",
        functional=F.multilabel_margin_loss,
        module=lnn.MultiLabelMarginLoss,
        reference=R.multilabel_margin_loss,
        torch_functional=_torch_in_float32(TF.multilabel_margin_loss),
        samples=_mlm_samples,
        error_cases=_mlm_errors,
        # No empty batch here: torch returns uninitialised memory for it (see multi_margin_loss).
        edge_samples=lambda g: [
            Sample(
                args=(
                    _t([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]]),
                    torch.tensor([[1, -1, 0], [0, 2, -1]]),
                ),
                desc="scores ±1e4",
            )
        ],
        random_sample=lambda g, n, c: Sample(args=(randn(g, n, c), _random_padded(g, n, c))),
    )
)


def _random_padded(g: torch.Generator, n: int, c: int) -> torch.Tensor:
    """(n, c) rows of distinct class indices, -1 after a random count, junk indices after it."""
    rows = []
    for _ in range(n):
        perm = torch.randperm(c, generator=g)
        k = int(randint(g, c + 1, 1))
        row = perm.clone()
        if k < c:
            row[k] = -1
        rows.append(row)
    return torch.stack(rows)


# ---------------------------------------------------------------- triplet margin


def _triplets(g: torch.Generator, *shape: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return randn(g, *shape), randn(g, *shape), randn(g, *shape)


def _swap_triplets(g: torch.Generator, n: int, d: int):
    """Negatives close to the positives, so that d(p, n) < d(a, n) and the swap matters."""
    a = randn(g, n, d)
    pos = a + randn(g, n, d, scale=1.5)
    neg = pos + randn(g, n, d, scale=0.3)
    return a, pos, neg


def _tm_samples(g: torch.Generator) -> list[Sample]:
    a = randn(g, 4, 3)
    same = (a, a.clone(), randn(g, 4, 3))
    return [
        Sample(args=_triplets(g, 5, 4), desc="p=2, margin 1"),
        Sample(args=_swap_triplets(g, 5, 4), kwargs={"swap": True}, desc="swap"),
        Sample(args=_triplets(g, 5, 4), kwargs={"p": 1.0, "margin": 0.5}, desc="p=1, margin 0.5"),
        Sample(
            args=_triplets(g, 5, 4),
            kwargs={"p": 3.0, "eps": 1e-3, "swap": True},
            desc="p=3, eps, swap",
        ),
        Sample(args=_triplets(g, 5, 4), kwargs={"p": float("inf"), "margin": 2.0}, desc="p=inf"),
        Sample(args=_triplets(g, 6), kwargs={"margin": 3.0}, desc="(D,) no batch"),
        Sample(
            args=same,
            kwargs={"eps": 0.1, "margin": 2.0},
            desc="anchor == positive (eps keeps d > 0)",
        ),
    ]


def _triplet_errors() -> list[ErrorCase]:
    a = torch.randn(4, 3)
    return [
        ErrorCase(
            args=(a, a[:, :2], a),
            kwargs={},
            error=ValueError,
            match=r"positive size \(4, 2\).*anchor size \(4, 3\)",
        ),
        ErrorCase(
            args=(a, a, a[:3]),
            kwargs={},
            error=ValueError,
            match=r"negative size \(3, 3\).*anchor size \(4, 3\)",
        ),
        ErrorCase(
            args=(a, a.long(), a),
            kwargs={},
            error=TypeError,
            match=r"positive must be a floating.*int64",
        ),
        ErrorCase(
            args=(a, a, a),
            kwargs={"margin": 0.0},
            error=ValueError,
            match=r"margin must be greater than 0, got 0\.0",
            in_constructor=True,
        ),
        ErrorCase(
            args=(a, a, a),
            kwargs={"margin": -1.0},
            error=ValueError,
            match=r"margin must be greater than 0, got -1\.0",
            in_constructor=True,
        ),
        ErrorCase(
            args=(a, a, a),
            kwargs={"swap": 1},
            error=TypeError,
            match=r"swap must be a bool, got int",
            in_constructor=True,
        ),
    ]


def _tm_errors() -> list[ErrorCase]:
    a = torch.randn(4, 3)
    return [
        *_triplet_errors(),
        ErrorCase(
            args=(a, a, a),
            kwargs={"p": float("nan")},
            error=ValueError,
            match=r"p must not be NaN",
            in_constructor=True,
        ),
        ErrorCase(
            args=(a, a, a),
            kwargs={"eps": "small"},
            error=TypeError,
            match=r"eps must be a real number",
            in_constructor=True,
        ),
        ErrorCase(
            args=(torch.tensor(1.0),) * 3,
            kwargs={},
            error=ValueError,
            match=r"must be \(D,\) or \(N, D\), got 0-D",
        ),
    ]


def _tm_edges(g: torch.Generator) -> list[Sample]:
    big = _t([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]])
    return [
        Sample(args=(randn(g, 0, 4), randn(g, 0, 4), randn(g, 0, 4)), desc="empty batch"),
        Sample(args=(big, big * 0.5, -big), kwargs={"swap": True}, desc="inputs ±1e4"),
    ]


register(
    LossInfo(
        name="triplet_margin_loss",
        family="ranking",
        formula="max(d(a, p) - d(a, n) + margin, 0), d(u, v) = ||u - v + eps||_p",
        functional=F.triplet_margin_loss,
        module=lnn.TripletMarginLoss,
        reference=R.triplet_margin_loss,
        torch_functional=TF.triplet_margin_loss,
        samples=_tm_samples,
        error_cases=_tm_errors,
        edge_samples=_tm_edges,
        random_sample=lambda g, n, c: Sample(
            args=_triplets(g, n, c),
            kwargs={
                "margin": float(rand(g, 1, low=0.1, high=2.0)),
                "p": float(rand(g, 1, low=1.0, high=3.0)),
                "swap": bool(randint(g, 2, 1)),
            },
        ),
        grad_args=(0, 1, 2),
    )
)

# ---------------------------------------------------------------- triplet with distance


def _torch_cosine_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 1.0 - TF.cosine_similarity(x, y, dim=-1)


def _numpy_cosine_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # torch's cosine_similarity clamps the norms at 1e-8; irrelevant for these random vectors.
    dot = np.sum(x * y, axis=-1)
    return 1.0 - dot / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))


def _torch_l_inf(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).abs().amax(dim=-1)


def _numpy_l_inf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(x - y).max(axis=-1)


def _tmd_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=_triplets(g, 5, 4), desc="default distance (pairwise_distance)"),
        Sample(
            args=_swap_triplets(g, 5, 4), kwargs={"swap": True, "margin": 0.5}, desc="default, swap"
        ),
        Sample(
            args=_triplets(g, 5, 4),
            kwargs={"distance_function": _torch_cosine_distance, "margin": 0.3},
            ref_kwargs={"distance_function": _numpy_cosine_distance},
            desc="1 - cosine similarity",
        ),
        Sample(
            args=_swap_triplets(g, 5, 4),
            kwargs={"distance_function": _torch_cosine_distance, "swap": True},
            ref_kwargs={"distance_function": _numpy_cosine_distance},
            desc="1 - cosine similarity, swap",
        ),
        Sample(
            args=_triplets(g, 5, 4),
            kwargs={
                "distance_function": functools.partial(F.pairwise_distance, p=1.0),
                "margin": 2.0,
            },
            ref_kwargs={"distance_function": functools.partial(R.pairwise_distance, p=1.0)},
            desc="losskit.pairwise_distance p=1",
        ),
        Sample(
            args=_triplets(g, 5, 4),
            kwargs={"distance_function": torch.nn.PairwiseDistance(p=3.0)},
            ref_kwargs={"distance_function": functools.partial(R.pairwise_distance, p=3.0)},
            desc="torch.nn.PairwiseDistance(p=3) module",
        ),
        Sample(
            args=_triplets(g, 5, 4),
            kwargs={"distance_function": _torch_l_inf, "margin": 0.7},
            ref_kwargs={"distance_function": _numpy_l_inf},
            desc="L-infinity lambda",
        ),
        Sample(args=_triplets(g, 6), kwargs={"margin": 3.0}, desc="(D,) no batch"),
    ]


def _tmd_errors() -> list[ErrorCase]:
    a = torch.randn(4, 3)
    return [
        *_triplet_errors(),
        ErrorCase(
            args=(a, a, a),
            kwargs={"distance_function": "euclidean"},
            error=TypeError,
            match=r"distance_function must be callable or None, got str",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="triplet_margin_with_distance_loss",
        family="ranking",
        formula="max(d(a, p) - d(a, n) + margin, 0), any distance d (default ||a - b + 1e-6||_2)",
        functional=F.triplet_margin_with_distance_loss,
        module=lnn.TripletMarginWithDistanceLoss,
        reference=R.triplet_margin_with_distance_loss,
        torch_functional=TF.triplet_margin_with_distance_loss,
        samples=_tmd_samples,
        error_cases=_tmd_errors,
        edge_samples=lambda g: [
            Sample(args=(randn(g, 0, 4), randn(g, 0, 4), randn(g, 0, 4)), desc="empty batch"),
        ],
        random_sample=lambda g, n, c: Sample(
            args=_triplets(g, n, c),
            kwargs={"margin": float(rand(g, 1, low=0.1, high=2.0)), "swap": bool(randint(g, 2, 1))},
        ),
        grad_args=(0, 1, 2),
    )
)
