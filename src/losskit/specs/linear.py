"""Registry entries of the language-model head losses (linear cross entropy, z-loss, causal LM).

``linear_cross_entropy`` and ``causal_lm_loss`` have no Module entry: ``LinearCrossEntropyLoss``
owns its projection (``forward(input, target)``) and ``CausalLMLoss`` holds a model's head, so
both are tested against their functionals in ``tests/test_linear_head.py`` and
``tests/test_lm_causal.py``. Their half-precision inputs give a float32 loss (the generic half
test expects the input's dtype), so halves are tested there too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as TF

from .. import linear as F
from .._registry import ErrorCase, LossInfo, Sample, register
from ..lm import causal as C
from ..nn import linear as lnn
from ..reference import linear as R
from ._make import F64, probs, rand, randint, randn, with_ignored

# ---------------------------------------------------------------- linear cross entropy


def _lce_samples(g: torch.Generator) -> list[Sample]:
    t = randint(g, 5, 6)
    t_ign = with_ignored(t, g, -100)
    t_ign[0] = 2
    options = getattr(torch.nn, "LinearCrossEntropyOptions", None)
    samples = [
        Sample(args=(randn(g, 6, 4), randn(g, 5, 4), t), desc="indices"),
        Sample(
            args=(randn(g, 6, 4), randn(g, 5, 4), t_ign),
            kwargs={"linear_bias": randn(g, 5), "weight": rand(g, 5, low=0.2, high=2.0)},
            desc="bias+weight+ignore",
        ),
        Sample(
            args=(randn(g, 6, 4), randn(g, 5, 4), t_ign),
            kwargs={"label_smoothing": 0.2, "weight": rand(g, 5, low=0.2)},
            desc="label_smoothing+weight",
        ),
        Sample(
            args=(randn(g, 7, 3), randn(g, 5, 3), randint(g, 5, 7)),
            kwargs={"chunk_size": 2, "label_smoothing": 0.1},
            desc="chunk_size=2 (odd N)",
            torch_kwargs=None,
        ),
        Sample(args=(randn(g, 5, 4), randn(g, 6, 4), probs(g, 5, 6)), desc="class probabilities"),
        Sample(args=(randn(g, 4), randn(g, 5, 4), randint(g, 5)), desc="no batch (in_features,)"),
        Sample(
            args=(randn(g, 3, 4), randn(g, 3, 2, 4), randint(g, 3, 3, 2)),
            kwargs={"linear_bias": randn(g, 3, 2)},
            desc="K-dim weight (C, d1, H)",
        ),
        Sample(
            args=(randn(g, 2, 3, 4), randn(g, 7, 4), with_ignored(randint(g, 7, 2, 3), g, -100)),
            kwargs={"chunk_size": 2},
            desc="(B, T, H) input",
            torch_kwargs=None,  # torch takes (N, H) only
        ),
        Sample(
            args=(randn(g, 6, 4, scale=2.0), randn(g, 7, 4), t_ign),
            kwargs={"softcap": 3.0, "logit_scale": 0.8, "lse_square_scale": 0.05, "chunk_size": 4},
            desc="softcap+logit_scale+z-loss",
            torch_kwargs=None,  # torch has none of them
        ),
        Sample(
            args=(randn(g, 5, 4), randn(g, 6, 4), probs(g, 5, 6)),
            kwargs={"softcap": 2.0, "lse_square_scale": 0.1, "weight": rand(g, 6, low=0.5)},
            desc="probabilities+softcap+z-loss",
            torch_kwargs=None,
        ),
    ]
    if options is not None:
        samples.append(
            Sample(
                args=(randn(g, 9, 4), randn(g, 5, 4), with_ignored(randint(g, 5, 9), g, -100)),
                kwargs={"options": options(batch_chunk_size=2), "ignore_index": -100},
                desc="torch options (batch_chunk_size=2)",
            )
        )
    return samples


def _lce_errors() -> list[ErrorCase]:
    x, w, t = torch.randn(4, 3), torch.randn(5, 3), torch.tensor([0, 1, 4, 2])
    return [
        ErrorCase(
            args=(x, torch.randn(5, 2), t),
            kwargs={},
            error=ValueError,
            match=r"3 in_features.*\(5, 2\)",
        ),
        ErrorCase(
            args=(x, w.double(), t),
            kwargs={},
            error=TypeError,
            match=r"linear_weight has dtype torch.float64",
        ),
        ErrorCase(
            args=(x, w, torch.tensor([0, 1, 5, 2])),
            kwargs={},
            error=IndexError,
            match=r"Target 5 is out of bounds",
        ),
        ErrorCase(args=(x, w, t[:3]), kwargs={}, error=ValueError, match=r"Expected target size"),
        ErrorCase(
            args=(x, w, t),
            kwargs={"linear_bias": torch.randn(4)},
            error=ValueError,
            match=r"linear_bias.*\(5,\)",
        ),
        ErrorCase(
            args=(x, w, t),
            kwargs={"linear_bias": torch.randn(5, dtype=torch.float64)},
            error=TypeError,
            match=r"linear_bias has dtype torch.float64",
        ),
        ErrorCase(
            args=(x, w, t), kwargs={"label_smoothing": 2.0}, error=ValueError, match="label_smoo"
        ),
        ErrorCase(
            args=(x, w, t), kwargs={"chunk_size": 0}, error=ValueError, match=r"chunk_size.*>= 1"
        ),
        ErrorCase(
            args=(x, w, t), kwargs={"chunk_bytes": 0}, error=ValueError, match=r"chunk_bytes"
        ),
        ErrorCase(
            args=(x, w, t), kwargs={"softcap": -1.0}, error=ValueError, match=r"softcap must be"
        ),
        ErrorCase(
            args=(x, w, t), kwargs={"logit_scale": 0.0}, error=ValueError, match=r"logit_scale"
        ),
        ErrorCase(
            args=(x, w, t),
            kwargs={"lse_square_scale": -0.1},
            error=ValueError,
            match=r"lse_square_scale",
        ),
        ErrorCase(args=(x, w, t), kwargs={"options": 3}, error=TypeError, match=r"options must"),
        ErrorCase(
            args=(x[None], torch.randn(5, 2, 3), t),
            kwargs={},
            error=ValueError,
            match=r"input must be \(N, in_features\)",
        ),
        ErrorCase(args=(x, w, t.bool()), kwargs={}, error=TypeError, match=r"target.*torch.bool"),
        ErrorCase(
            args=(x, w, torch.rand(4, 5)),
            kwargs={"ignore_index": 1},
            error=ValueError,
            match=r"ignore_index cannot be specified",
        ),
    ]


def _lce_edges(g: torch.Generator) -> list[Sample]:
    big = torch.tensor([[100.0, -100.0], [-100.0, 100.0], [50.0, 0.0]], dtype=F64)
    return [
        Sample(args=(randn(g, 0, 3), randn(g, 4, 3), randint(g, 4, 0)), desc="empty batch"),
        Sample(args=(randn(g, 3, 3), randn(g, 4, 3), torch.full((3,), -100)), desc="all ignored"),
        Sample(
            args=(
                torch.tensor([[100.0, 1.0], [-100.0, 2.0]], dtype=F64),
                big,
                torch.tensor([0, 2]),
            ),
            kwargs={"label_smoothing": 0.1},
            desc="logits ±1e4",
        ),
    ]


def _lce_random(g: torch.Generator, n: int, c: int) -> Sample:
    h = 3
    t = with_ignored(randint(g, c, n), g, -100, frac=0.2)
    kwargs = {"label_smoothing": float(rand(g, 1)), "chunk_size": int(randint(g, 4, 1)) + 1}
    # torch has no chunk_size: the random chunking is checked against the NumPy reference.
    return Sample(
        args=(randn(g, n, h), randn(g, c, h), t),
        kwargs=kwargs,
        desc=f"random n={n} c={c}",
        torch_kwargs=None,
    )


register(
    LossInfo(
        name="linear_cross_entropy",
        family="linear",
        formula="CE(cap(s (x W^T + b)), y) + λ lse², chunked over rows (no full logits)",
        functional=F.linear_cross_entropy,
        module=None,
        reference=R.linear_cross_entropy,
        torch_functional=getattr(TF, "linear_cross_entropy", None),
        samples=_lce_samples,
        error_cases=_lce_errors,
        edge_samples=_lce_edges,
        random_sample=_lce_random,
        grad_args=(0, 1),
        supports_half=False,  # a float32 loss for half inputs: tests/test_linear_head.py
    )
)

# ---------------------------------------------------------------- causal LM loss


def _causal_samples(g: torch.Generator) -> list[Sample]:
    labels = with_ignored(randint(g, 11, 2, 6), g, -100)
    labels[:, 1] = 3
    return [
        Sample(args=(randn(g, 2, 6, 4), randn(g, 11, 4), labels), desc="(B, T, H), shift"),
        Sample(
            args=(randn(g, 2, 6, 4), randn(g, 11, 4), labels),
            kwargs={"lm_head_bias": randn(g, 11), "num_items_in_batch": 13},
            desc="bias+num_items_in_batch",
            ref_kwargs={},
        ),
        Sample(
            args=(randn(g, 3, 5, 4, scale=2.0), randn(g, 11, 4), randint(g, 11, 3, 5)),
            kwargs={"softcap": 4.0, "logit_scale": 0.5, "z_loss": 0.01, "label_smoothing": 0.1},
            desc="softcap+logit_scale+z_loss+smoothing",
        ),
        Sample(
            args=(randn(g, 7, 4), randn(g, 11, 4), randint(g, 11, 7)),
            kwargs={"shift": False, "chunk_bytes": 100},
            desc="(T, H), no shift, tiny chunks",
        ),
    ]


def _causal_errors() -> list[ErrorCase]:
    h, w, y = torch.randn(2, 5, 3), torch.randn(7, 3), torch.randint(0, 7, (2, 5))
    return [
        ErrorCase(args=(h, w, y[:, :4]), kwargs={}, error=ValueError, match=r"labels must have"),
        ErrorCase(args=(h, w, y.float()), kwargs={}, error=TypeError, match=r"labels must be an"),
        ErrorCase(
            args=(h, w, y), kwargs={"num_items_in_batch": -1}, error=ValueError, match=r">= 0"
        ),
        ErrorCase(args=(h, w, y), kwargs={"z_loss": -1.0}, error=ValueError, match=r"z_loss"),
        ErrorCase(args=(h, w, y), kwargs={"shift": 1}, error=TypeError, match=r"shift must"),
        ErrorCase(
            args=(h[0, 0], w, y[0, 0]), kwargs={}, error=ValueError, match=r"\(\.\.\., T, H\)"
        ),
        ErrorCase(
            args=(h, w, torch.full((2, 5), 7)), kwargs={}, error=IndexError, match=r"out of bounds"
        ),
    ]


register(
    LossInfo(
        name="causal_lm_loss",
        family="linear",
        formula="next-token CE of cap(s (h_t W^T + b)) vs labels[t+1] + λ lse²; sum / n_items",
        functional=C.causal_lm_loss,
        module=None,
        reference=R.causal_lm_loss,
        samples=_causal_samples,
        error_cases=_causal_errors,
        grad_args=(0, 1),
        supports_half=False,  # a float32 loss for half inputs: tests/test_lm_causal.py
    )
)

# ---------------------------------------------------------------- cross entropy with z-loss


def _z_samples(g: torch.Generator) -> list[Sample]:
    t = randint(g, 5, 6)
    t_ign = with_ignored(t, g, -100)
    t_ign[0] = 1
    return [
        Sample(args=(randn(g, 6, 5), t), kwargs={"lse_square_scale": 0.1}, desc="z-loss"),
        Sample(args=(randn(g, 6, 5, scale=20.0), t), kwargs={"softcap": 5.0}, desc="softcap"),
        Sample(
            args=(randn(g, 6, 5, scale=3.0), t_ign),
            kwargs={
                "weight": rand(g, 5, low=0.2, high=2.0),
                "label_smoothing": 0.1,
                "lse_square_scale": 0.05,
                "softcap": 4.0,
            },
            desc="everything",
        ),
        Sample(
            args=(randn(g, 2, 4, 3), with_ignored(randint(g, 4, 2, 3), g, -100)),
            kwargs={"lse_square_scale": 0.2},
            desc="K-dim (N,C,d)",
        ),
        Sample(
            args=(randn(g, 5), randint(g, 5)),
            kwargs={"lse_square_scale": 0.3},
            desc="no batch (C,)",
        ),
    ]


def _z_errors() -> list[ErrorCase]:
    x, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    return [
        ErrorCase(
            args=(x, t),
            kwargs={"softcap": 0.0},
            error=ValueError,
            match=r"softcap must be None or .*> 0",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, t),
            kwargs={"lse_square_scale": -1.0},
            error=ValueError,
            match=r"lse_square_scale",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, torch.tensor([0, 1, 3, 1])),
            kwargs={},
            error=IndexError,
            match=r"Target 3 is out of bounds",
        ),
        ErrorCase(
            args=(x, torch.rand(4, 3)),
            kwargs={},
            error=TypeError,
            match=r"target must be an integer tensor",
        ),
        ErrorCase(
            args=(x, t[:2]), kwargs={}, error=ValueError, match=r"Expected target size \(4,\)"
        ),
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
            args=(randn(g, n, c, scale=3.0), with_ignored(randint(g, c, n), g, -100, 0.2)),
            kwargs={"lse_square_scale": 0.01, "softcap": 10.0},
        ),
    )
)
