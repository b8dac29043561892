"""Registry entries of the language-model head losses (linear cross entropy, z-loss).

``linear_cross_entropy`` has no Module entry: like torch's, ``LinearCrossEntropyLoss`` owns its
projection (``forward(input, target)``), so it is tested against the functional in
``tests/kernels/test_kernel_linear.py``. ``linear_bias`` is keyword-only (as in torch); its
gradient is checked there too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as TF

from .. import linear as F
from .._registry import ErrorCase, LossInfo, Sample, register
from ..nn import linear as lnn
from ..reference import linear as R
from ._make import F64, probs, rand, randint, randn, with_ignored

# ---------------------------------------------------------------- linear cross entropy


def _lce_samples(g: torch.Generator) -> list[Sample]:
    t = randint(g, 5, 6)
    t_ign = with_ignored(t, g, -100)
    t_ign[0] = 2
    return [
        Sample((randn(g, 6, 4), randn(g, 5, 4), t), desc="indices"),
        Sample(
            (randn(g, 6, 4), randn(g, 5, 4), t_ign),
            {"linear_bias": randn(g, 5), "weight": rand(g, 5, low=0.2, high=2.0)},
            desc="bias+weight+ignore",
        ),
        Sample(
            (randn(g, 6, 4), randn(g, 5, 4), t_ign),
            {"label_smoothing": 0.2, "weight": rand(g, 5, low=0.2)},
            desc="label_smoothing+weight",
        ),
        Sample(
            (randn(g, 7, 3), randn(g, 5, 3), randint(g, 5, 7)),
            {"chunk_size": 2, "label_smoothing": 0.1},
            desc="chunk_size=2 (odd N)",
            torch_kwargs=None,
        ),
        Sample((randn(g, 5, 4), randn(g, 6, 4), probs(g, 5, 6)), desc="class probabilities"),
        Sample((randn(g, 4), randn(g, 5, 4), randint(g, 5)), desc="no batch (in_features,)"),
        Sample(
            (randn(g, 3, 4), randn(g, 3, 2, 4), randint(g, 3, 3, 2)),
            {"linear_bias": randn(g, 3, 2)},
            desc="K-dim weight (C, d1, H)",
        ),
    ]


def _lce_errors() -> list[ErrorCase]:
    x, w, t = torch.randn(4, 3), torch.randn(5, 3), torch.tensor([0, 1, 4, 2])
    return [
        ErrorCase((x, torch.randn(5, 2), t), {}, ValueError, r"3 in_features.*\(5, 2\)"),
        ErrorCase((x, w.double(), t), {}, TypeError, r"linear_weight has dtype torch.float64"),
        ErrorCase((x, w, torch.tensor([0, 1, 5, 2])), {}, IndexError, r"Target 5 is out of bounds"),
        ErrorCase((x, w, t[:3]), {}, ValueError, r"Expected target size \(4,\)"),
        ErrorCase((x, w, t), {"linear_bias": torch.randn(4)}, ValueError, r"linear_bias.*\(5,\)"),
        ErrorCase(
            (x, w, t),
            {"linear_bias": torch.randn(5, dtype=torch.float64)},
            TypeError,
            r"linear_bias has dtype torch.float64",
        ),
        ErrorCase((x, w, t), {"label_smoothing": 2.0}, ValueError, r"label_smoothing"),
        ErrorCase((x, w, t), {"chunk_size": 0}, ValueError, r"chunk_size.*>= 1"),
        ErrorCase((x[None], w, t), {}, ValueError, r"input must be \(in_features,\)"),
        ErrorCase((x, w, t.bool()), {}, TypeError, r"target.*torch.bool"),
    ]


def _lce_edges(g: torch.Generator) -> list[Sample]:
    big = torch.tensor([[100.0, -100.0], [-100.0, 100.0], [50.0, 0.0]], dtype=F64)
    return [
        Sample((randn(g, 0, 3), randn(g, 4, 3), randint(g, 4, 0)), desc="empty batch"),
        Sample((randn(g, 3, 3), randn(g, 4, 3), torch.full((3,), -100)), desc="all ignored"),
        Sample(
            (torch.tensor([[100.0, 1.0], [-100.0, 2.0]], dtype=F64), big, torch.tensor([0, 2])),
            {"label_smoothing": 0.1},
            desc="logits ±1e4",
        ),
    ]


def _lce_random(g: torch.Generator, n: int, c: int) -> Sample:
    h = 3
    t = with_ignored(randint(g, c, n), g, -100, frac=0.2)
    kwargs = {"label_smoothing": float(rand(g, 1)), "chunk_size": int(randint(g, 4, 1)) + 1}
    # torch has no chunk_size: the random chunking is checked against the NumPy reference.
    return Sample(
        (randn(g, n, h), randn(g, c, h), t), kwargs, desc=f"random n={n} c={c}", torch_kwargs=None
    )


register(
    LossInfo(
        name="linear_cross_entropy",
        family="linear",
        formula="cross_entropy(x W^T + b, y), chunked over rows (no full logits)",
        functional=F.linear_cross_entropy,
        module=None,
        reference=R.linear_cross_entropy,
        torch_functional=getattr(TF, "linear_cross_entropy", None),
        samples=_lce_samples,
        error_cases=_lce_errors,
        edge_samples=_lce_edges,
        random_sample=_lce_random,
        grad_args=(0, 1),
    )
)

# ---------------------------------------------------------------- cross entropy with z-loss


def _z_samples(g: torch.Generator) -> list[Sample]:
    t = randint(g, 5, 6)
    t_ign = with_ignored(t, g, -100)
    t_ign[0] = 1
    return [
        Sample((randn(g, 6, 5), t), {"lse_square_scale": 0.1}, desc="z-loss"),
        Sample((randn(g, 6, 5, scale=20.0), t), {"softcap": 5.0}, desc="softcap"),
        Sample(
            (randn(g, 6, 5, scale=3.0), t_ign),
            {
                "weight": rand(g, 5, low=0.2, high=2.0),
                "label_smoothing": 0.1,
                "lse_square_scale": 0.05,
                "softcap": 4.0,
            },
            desc="everything",
        ),
        Sample(
            (randn(g, 2, 4, 3), with_ignored(randint(g, 4, 2, 3), g, -100)),
            {"lse_square_scale": 0.2},
            desc="K-dim (N,C,d)",
        ),
        Sample((randn(g, 5), randint(g, 5)), {"lse_square_scale": 0.3}, desc="no batch (C,)"),
    ]


def _z_errors() -> list[ErrorCase]:
    x, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    return [
        ErrorCase((x, t), {"softcap": 0.0}, ValueError, r"softcap must be None or .*> 0", "", True),
        ErrorCase((x, t), {"lse_square_scale": -1.0}, ValueError, r"lse_square_scale", "", True),
        ErrorCase((x, torch.tensor([0, 1, 3, 1])), {}, IndexError, r"Target 3 is out of bounds"),
        ErrorCase((x, torch.rand(4, 3)), {}, TypeError, r"target must be an integer tensor"),
        ErrorCase((x, t[:2]), {}, ValueError, r"Expected target size \(4,\)"),
    ]


register(
    LossInfo(
        name="cross_entropy_with_z_loss",
        family="linear",
        formula="CE(c tanh(x/c), y) + s lse(c tanh(x/c))^2",
        functional=F.cross_entropy_with_z_loss,
        module=lnn.CrossEntropyWithZLoss,
        reference=R.cross_entropy_with_z_loss,
        samples=_z_samples,
        error_cases=_z_errors,
        random_sample=lambda g, n, c: Sample(
            (randn(g, n, c, scale=3.0), with_ignored(randint(g, c, n), g, -100, 0.2)),
            {"lse_square_scale": 0.01, "softcap": 10.0},
        ),
    )
)
