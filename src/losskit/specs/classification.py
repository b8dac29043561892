"""Registry entries of the classification losses."""

from __future__ import annotations

import torch
import torch.nn.functional as TF

from .. import classification as F
from .. import nn as lnn
from .. import reference as R
from .._registry import ErrorCase, LossInfo, Sample, register
from ._make import probs, rand, randint, randn, with_ignored

# ---------------------------------------------------------------- cross entropy


def _ce_samples(g: torch.Generator) -> list[Sample]:
    w = rand(g, 4, low=0.2, high=2.0)
    t = randint(g, 4, 6)
    t_ign = with_ignored(t, g, -100)
    t_ign[0] = 1  # at least one kept target
    kt = randint(g, 3, 2, 4, 2)
    return [
        Sample(args=(randn(g, 6, 4), t), desc="indices"),
        Sample(args=(randn(g, 6, 4), t), kwargs={"weight": w}, desc="weight"),
        Sample(
            args=(randn(g, 6, 4), t_ign), kwargs={"ignore_index": -100}, desc="ignore_index=-100"
        ),
        Sample(
            args=(randn(g, 6, 4), t),
            kwargs={"ignore_index": 2, "weight": w},
            desc="ignore_index in range",
        ),
        Sample(
            args=(randn(g, 6, 4), t_ign),
            kwargs={"weight": w, "label_smoothing": 0.2},
            desc="weight+ignore+label_smoothing",
        ),
        Sample(
            args=(randn(g, 6, 4, scale=3.0), t),
            kwargs={"label_smoothing": 0.1},
            desc="label_smoothing",
        ),
        Sample(
            args=(randn(g, 2, 3, 4, 2), with_ignored(kt, g, -100)),
            kwargs={"weight": rand(g, 3, low=0.5), "label_smoothing": 0.05},
            desc="K-dim (N,C,d1,d2)",
        ),
        Sample(args=(randn(g, 5), randint(g, 5)), desc="no batch (C,)"),
        Sample(args=(randn(g, 5, 3), probs(g, 5, 3)), desc="class probabilities"),
        Sample(
            args=(randn(g, 5, 3), probs(g, 5, 3)),
            kwargs={"weight": rand(g, 3, low=0.5), "label_smoothing": 0.3},
            desc="probabilities+weight+smoothing",
        ),
        Sample(args=(randn(g, 2, 3, 4), probs(g, 2, 3, 4)), desc="probabilities K-dim"),
    ]


def _ce_errors() -> list[ErrorCase]:
    x = torch.randn(4, 3)
    t = torch.tensor([0, 1, 2, 1])
    return [
        ErrorCase(
            args=(x, torch.tensor([0, 1, 3, 1])),
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
            args=(x, t),
            kwargs={"weight": torch.ones(4)},
            error=ValueError,
            match=r"weight.*\(3\).*\(4,\)",
        ),
        ErrorCase(
            args=(x, t),
            kwargs={"label_smoothing": 1.5},
            error=ValueError,
            match=r"label_smoothing.*1\.5",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, t),
            kwargs={"label_smoothing": -0.1},
            error=ValueError,
            match=r"label_smoothing",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x.long(), t), kwargs={}, error=TypeError, match=r"input must be a floating.*int64"
        ),
        ErrorCase(args=(x, t.bool()), kwargs={}, error=TypeError, match=r"target.*torch.bool"),
        ErrorCase(
            args=(x, torch.rand(4, 2)),
            kwargs={},
            error=ValueError,
            match=r"target size \(4, 2\).*input size",
        ),
        ErrorCase(
            args=([[1.0, 2.0]], t),
            kwargs={},
            error=TypeError,
            match=r"input must be a torch.Tensor, got list",
        ),
    ]


def _ce_edges(g: torch.Generator) -> list[Sample]:
    t = randint(g, 4, 6)
    return [
        Sample(args=(randn(g, 0, 4), randint(g, 4, 0)), desc="empty batch"),
        Sample(args=(randn(g, 3, 4), torch.full((3,), -100)), desc="all ignored"),
        Sample(
            args=(
                torch.tensor([[1e4, -1e4, 0.0, 5.0], [-1e4, 1e4, 1e4, -5.0]], dtype=torch.float64),
                torch.tensor([1, 0]),
            ),
            kwargs={"label_smoothing": 0.1},
            desc="logits ±1e4",
        ),
        Sample(
            args=(randn(g, 6, 4, scale=1e3), t), kwargs={"weight": rand(g, 4)}, desc="large logits"
        ),
    ]


def _ce_random(g: torch.Generator, n: int, c: int) -> Sample:
    logits = randn(g, n, c, scale=float(rand(g, 1, low=0.1, high=5.0)))
    t = with_ignored(randint(g, c, n), g, -100, frac=0.2)
    kwargs = {"label_smoothing": float(rand(g, 1))}
    if bool(randint(g, 2, 1)):
        kwargs["weight"] = rand(g, c, low=0.1, high=2.0)
    return Sample(args=(logits, t), kwargs=kwargs, desc=f"random n={n} c={c}")


register(
    LossInfo(
        name="cross_entropy",
        family="classification",
        formula="-(1-eps) w_y log softmax(x)_y - eps/C sum_c w_c log softmax(x)_c",
        functional=F.cross_entropy,
        module=lnn.CrossEntropyLoss,
        reference=R.cross_entropy,
        reference_grad=R.cross_entropy_grad,
        torch_functional=TF.cross_entropy,
        samples=_ce_samples,
        error_cases=_ce_errors,
        edge_samples=_ce_edges,
        random_sample=_ce_random,
    )
)

# ---------------------------------------------------------------- nll


def _nll_samples(g: torch.Generator) -> list[Sample]:
    t = randint(g, 4, 6)
    return [
        Sample(args=(randn(g, 6, 4).log_softmax(1), t), desc="log-probabilities"),
        Sample(
            args=(randn(g, 6, 4), t),
            kwargs={"weight": rand(g, 4, low=0.2)},
            desc="weight, any input",
        ),
        Sample(
            args=(randn(g, 6, 4), with_ignored(t, g, 1)),
            kwargs={"ignore_index": 1},
            desc="ignore_index=1",
        ),
        Sample(
            args=(
                randn(g, 2, 3, 4, 4).log_softmax(1),
                with_ignored(randint(g, 3, 2, 4, 4), g, -100),
            ),
            kwargs={"weight": rand(g, 3, low=0.2)},
            desc="(N,C,H,W) segmentation (NLLLoss2d)",
        ),
        Sample(args=(randn(g, 4), randint(g, 4)), desc="no batch (C,)"),
    ]


def _nll_errors() -> list[ErrorCase]:
    x = torch.randn(4, 3).log_softmax(1)
    t = torch.tensor([0, 1, 2, 1])
    return [
        ErrorCase(
            args=(x, torch.tensor([0, 1, 7, 1])),
            kwargs={},
            error=IndexError,
            match=r"Target 7 is out of bounds",
        ),
        ErrorCase(
            args=(x, t.double()),
            kwargs={},
            error=TypeError,
            match=r"target must be an integer tensor",
        ),
        ErrorCase(args=(x, t[:2]), kwargs={}, error=ValueError, match=r"Expected target size"),
        ErrorCase(
            args=(x, t),
            kwargs={"weight": torch.ones(2, 3)},
            error=ValueError,
            match=r"weight must be a 1-D",
        ),
        ErrorCase(
            args=(x, t),
            kwargs={"ignore_index": 1.5},
            error=TypeError,
            match=r"ignore_index must be an int",
            desc="",
            in_constructor=True,
        ),
    ]


def _nll_edges(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(randn(g, 0, 3), randint(g, 3, 0)), desc="empty batch"),
        Sample(args=(randn(g, 4, 3), torch.full((4,), -100)), desc="all ignored"),
        Sample(args=(randn(g, 2, 3, 0, 4), randint(g, 3, 2, 0, 4)), desc="empty spatial"),
    ]


register(
    LossInfo(
        name="nll_loss",
        family="classification",
        formula="-w_y x_y  (x: log-probabilities)",
        functional=F.nll_loss,
        module=lnn.NLLLoss,
        reference=R.nll_loss,
        torch_functional=TF.nll_loss,
        samples=_nll_samples,
        error_cases=_nll_errors,
        edge_samples=_nll_edges,
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, c), with_ignored(randint(g, c, n), g, -100, 0.2)),
            kwargs={"weight": rand(g, c, low=0.1)},
        ),
    )
)

# ---------------------------------------------------------------- binary cross entropy


def _bce_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(rand(g, 5, 3, low=0.02, high=0.98), rand(g, 5, 3)), desc="soft targets"),
        Sample(
            args=(rand(g, 4, 3, low=0.02, high=0.98), randint(g, 2, 4, 3).double()),
            kwargs={"weight": rand(g, 3, low=0.2)},
            desc="hard targets, weight (C,)",
        ),
        Sample(args=(rand(g, 7, low=0.05, high=0.95), rand(g, 7)), desc="1-D"),
    ]


def _bce_errors() -> list[ErrorCase]:
    x = torch.rand(3, 2)
    return [
        ErrorCase(
            args=(x * 2 + 0.5, torch.rand(3, 2)),
            kwargs={},
            error=ValueError,
            match=r"between 0 and 1",
        ),
        ErrorCase(
            args=(x, torch.rand(3, 1)),
            kwargs={},
            error=ValueError,
            match=r"target size \(3, 1\).*input size \(3, 2\)",
        ),
        ErrorCase(
            args=(x, torch.ones(3, 2, dtype=torch.long)),
            kwargs={},
            error=TypeError,
            match=r"target must be a float",
        ),
        ErrorCase(
            args=(x, torch.rand(3, 2)),
            kwargs={"weight": torch.ones(4)},
            error=ValueError,
            match=r"weight of shape",
        ),
    ]


def _bce_edges(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(rand(g, 0, 3), rand(g, 0, 3)), desc="empty"),
        Sample(
            args=(
                torch.tensor([0.0, 1.0, 0.0, 1.0, 1e-13, 1e-40, 1 - 1e-13], dtype=torch.float64),
                torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.5, 0.0], dtype=torch.float64),
            ),
            desc="saturated and tiny probabilities",
        ),
    ]


register(
    LossInfo(
        name="binary_cross_entropy",
        family="classification",
        formula="-w (y log x + (1-y) log(1-x)), logs clamped at -100",
        functional=F.binary_cross_entropy,
        module=lnn.BCELoss,
        reference=R.binary_cross_entropy,
        torch_functional=TF.binary_cross_entropy,
        samples=_bce_samples,
        error_cases=_bce_errors,
        edge_samples=_bce_edges,
        random_sample=lambda g, n, c: Sample(
            args=(rand(g, n, c, low=0.01, high=0.99), rand(g, n, c)), kwargs={"weight": rand(g, c)}
        ),
    )
)


def _bcel_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(randn(g, 5, 3, scale=2.0), rand(g, 5, 3)), desc="soft targets"),
        Sample(
            args=(randn(g, 4, 3), randint(g, 2, 4, 3).double()),
            kwargs={"pos_weight": rand(g, 3, low=0.5, high=3.0)},
            desc="pos_weight (C,) over the class dim",
        ),
        Sample(
            args=(randn(g, 2, 4, 3), rand(g, 2, 4, 3)),
            kwargs={"weight": rand(g, 4, 1, low=0.2), "pos_weight": rand(g, 3, low=0.5, high=3.0)},
            desc="weight (4,1) + pos_weight (3,) on (2,4,3)",
        ),
        Sample(args=(randn(g, 6, scale=10.0), rand(g, 6)), desc="1-D, large logits"),
    ]


def _bcel_errors() -> list[ErrorCase]:
    x = torch.randn(3, 4)
    t = torch.rand(3, 4)
    return [
        ErrorCase(
            args=(x, t[:, :2]),
            kwargs={},
            error=ValueError,
            match=r"target size \(3, 2\).*input size \(3, 4\)",
        ),
        ErrorCase(
            args=(x, t),
            kwargs={"pos_weight": torch.ones(3)},
            error=ValueError,
            match=r"pos_weight of shape \(3,\)",
        ),
        ErrorCase(
            args=(x, t),
            kwargs={"pos_weight": torch.ones(4, dtype=torch.long)},
            error=TypeError,
            match="pos_weight",
        ),
        ErrorCase(args=(x.int(), t), kwargs={}, error=TypeError, match=r"input must be a floating"),
    ]


def _bcel_edges(g: torch.Generator) -> list[Sample]:
    big = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 30.0]], dtype=torch.float64)
    return [
        Sample(args=(randn(g, 0, 3), rand(g, 0, 3)), desc="empty"),
        Sample(
            args=(big, torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 1.0]], dtype=torch.float64)),
            kwargs={"pos_weight": torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64)},
            desc="logits ±1e4",
        ),
    ]


register(
    LossInfo(
        name="binary_cross_entropy_with_logits",
        family="classification",
        formula="w [(1-y) x + (1 + (pw-1) y) (log(1+exp(-|x|)) + max(-x, 0))]",
        functional=F.binary_cross_entropy_with_logits,
        module=lnn.BCEWithLogitsLoss,
        reference=R.binary_cross_entropy_with_logits,
        reference_grad=R.binary_cross_entropy_with_logits_grad,
        torch_functional=TF.binary_cross_entropy_with_logits,
        samples=_bcel_samples,
        error_cases=_bcel_errors,
        edge_samples=_bcel_edges,
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, c, scale=3.0), rand(g, n, c)),
            kwargs={"pos_weight": rand(g, c, low=0.2, high=4.0), "weight": rand(g, c)},
        ),
    )
)


def _mlsm_samples(g: torch.Generator) -> list[Sample]:
    return [
        Sample(args=(randn(g, 5, 4), randint(g, 2, 5, 4).double()), desc="float 0/1 targets"),
        Sample(
            args=(randn(g, 5, 4), randint(g, 2, 5, 4)),
            kwargs={"weight": rand(g, 4)},
            desc="int targets",
        ),
        Sample(args=(randn(g, 4), randint(g, 2, 4).double()), desc="no batch (C,)"),
    ]


register(
    LossInfo(
        name="multilabel_soft_margin_loss",
        family="classification",
        formula="-(1/C) sum_c w_c (y log sigmoid(x) + (1-y) log sigmoid(-x))",
        functional=F.multilabel_soft_margin_loss,
        module=lnn.MultiLabelSoftMarginLoss,
        reference=R.multilabel_soft_margin_loss,
        torch_functional=TF.multilabel_soft_margin_loss,
        samples=_mlsm_samples,
        error_cases=lambda: [
            ErrorCase(
                args=(torch.randn(3, 4), torch.rand(3, 5)),
                kwargs={},
                error=ValueError,
                match=r"target size \(3, 5\)",
            ),
            ErrorCase(
                args=(torch.randn(2, 3, 4), torch.rand(2, 3, 4)),
                kwargs={},
                error=ValueError,
                match=r"\(C,\) or \(N, C\)",
            ),
            ErrorCase(
                args=(torch.randn(3, 4), torch.rand(3, 4) > 0.5),
                kwargs={},
                error=TypeError,
                match=r"torch.bool",
            ),
        ],
        edge_samples=lambda g: [Sample(args=(randn(g, 0, 3), rand(g, 0, 3)), desc="empty")],
        random_sample=lambda g, n, c: Sample(args=(randn(g, n, c), randint(g, 2, n, c).double())),
    )
)
