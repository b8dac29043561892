"""Registry entries of the metric-learning losses (triplet per mining, pair losses, margin softmax).

Samples are ``(embeddings (B, D), labels (B,))``; the label layouts cover balanced P×K batches,
unbalanced ones with singleton classes, and the degenerate "one identity" / "all distinct"
batches (no valid triplet: loss 0). The margin-softmax entries add the class-centre weight as a
third positional argument, differentiable like the embeddings.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import reference as R
from .._registry import ErrorCase, LossInfo, Sample, register
from ..metric import (
    arcface_loss,
    contrastive_loss,
    cosface_loss,
    multi_similarity_loss,
    triplet_loss,
)
from ..nn.metric import ArcFaceLoss, ContrastiveLoss, CosFaceLoss, MultiSimilarityLoss, TripletLoss
from ._make import randint, randn


def _pk(p: int, k: int) -> torch.Tensor:
    return torch.arange(p).repeat_interleave(k)


def _unbalanced() -> torch.Tensor:
    # classes of sizes 3, 1, 4, 2 (class 1 has no positive), shuffled order
    return torch.tensor([2, 0, 3, 2, 1, 0, 2, 3, 0, 2])


def _layouts(g: torch.Generator) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    return [
        ("P=3xK=3", randn(g, 9, 4), _pk(3, 3)),
        ("unbalanced", randn(g, 10, 3), _unbalanced()),
        ("one identity", randn(g, 5, 3), torch.zeros(5, dtype=torch.int64)),
        ("all distinct", randn(g, 5, 3), torch.arange(5)),
    ]


# ---------------------------------------------------------------- triplet, one entry per mining


def _triplet_samples(mining: str):
    def samples(g: torch.Generator) -> list[Sample]:
        out = [
            Sample(args=(x, y), kwargs={"mining": mining, "margin": 0.5}, desc=name)
            for name, x, y in _layouts(g)
        ]
        x, y = randn(g, 8, 3), _pk(2, 4)
        out += [
            Sample(args=(x, y), kwargs={"mining": mining}, desc="defaults"),
            Sample(
                args=(x, y),
                kwargs={"mining": mining, "soft_margin": True, "margin": 0.1},
                desc="soft",
            ),
            Sample(
                args=(x, y),
                kwargs={"mining": mining, "margin": 1.0, "metric": "squared_euclidean"},
                desc="squared_euclidean",
            ),
            Sample(
                args=(x, y),
                kwargs={"mining": mining, "margin": 0.3, "metric": "cosine"},
                desc="cosine",
            ),
            Sample(
                args=(x, y),
                kwargs={"mining": mining, "margin": 0.4, "metric": "lp", "p": 1.0},
                desc="L1",
            ),
            Sample(
                args=(x, y),
                kwargs={"mining": mining, "margin": 0.4, "metric": "lp", "p": 3.0},
                desc="L3",
            ),
            Sample(
                args=(randn(g, 8, 3, scale=3.0), _unbalanced()[:8]),
                kwargs={"mining": mining, "margin": 2.0, "soft_margin": True},
                desc="wide, soft",
            ),
        ]
        return out

    return samples


def _triplet_errors(mining: str):
    def errors() -> list[ErrorCase]:
        x, y = torch.randn(6, 3), _pk(2, 3)
        m = {"mining": mining}
        return [
            ErrorCase(
                args=(x[0], y),
                kwargs=m,
                error=ValueError,
                match=r"embeddings must be a 2-D tensor.*\(3,\)",
            ),
            ErrorCase(
                args=(x, y[:4]),
                kwargs=m,
                error=ValueError,
                match=r"labels must be a 1-D tensor.*\(6,\).*\(4,\)",
            ),
            ErrorCase(
                args=(x, y.double()),
                kwargs=m,
                error=TypeError,
                match=r"labels must be an integer.*float64",
            ),
            ErrorCase(
                args=(x.long(), y),
                kwargs=m,
                error=TypeError,
                match=r"embeddings must be a floating.*int64",
            ),
            ErrorCase(
                args=(x, y),
                kwargs={**m, "margin": -0.1},
                error=ValueError,
                match=r"margin.*>= 0.*-0\.1",
                desc="",
                in_constructor=True,
            ),
            ErrorCase(
                args=(x, y),
                kwargs={**m, "metric": "manhattan"},
                error=ValueError,
                match=r"metric.*'manhattan'",
                desc="",
                in_constructor=True,
            ),
            ErrorCase(
                args=(x, y),
                kwargs={**m, "metric": "lp", "p": 0.5},
                error=ValueError,
                match=r"p must be >= 1.*0\.5",
                desc="",
                in_constructor=True,
            ),
            ErrorCase(
                args=(x, y),
                kwargs={"mining": "hardest"},
                error=ValueError,
                match=r"mining.*'hardest'",
                desc="",
                in_constructor=True,
            ),
            ErrorCase(
                args=(x, y),
                kwargs={**m, "soft_margin": 1},
                error=TypeError,
                match=r"soft_margin must be a bool",
                desc="",
                in_constructor=True,
            ),
        ]

    return errors


def _triplet_random(mining: str):
    def random(g: torch.Generator, n: int, c: int) -> Sample:
        kwargs = {"mining": mining, "margin": float(torch.rand((), generator=g)) * 2}
        return Sample(
            args=(randn(g, n, 4), randint(g, c, n)), kwargs=kwargs, desc=f"random n={n} c={c}"
        )

    return random


_MINING_FORMULAS = {
    "batch_hard": "mean_a [max_p d(a,p) - min_n d(a,n) + m]_+",
    "batch_all": "mean over active (a,p,n) of [d(a,p) - d(a,n) + m]_+",
    "semi_hard": "mean_(a,p) [d(a,p) - d(a,n_semi-hard) + m]_+",
}

for _mining, _formula in _MINING_FORMULAS.items():
    register(
        LossInfo(
            name=f"triplet_{_mining}",
            family="metric",
            formula=_formula,
            functional=triplet_loss,
            module=TripletLoss,
            reference=R.triplet_loss,
            samples=_triplet_samples(_mining),
            error_cases=_triplet_errors(_mining),
            random_sample=_triplet_random(_mining),
            # batch-all and semi-hard list a data-dependent number of triplets.
            compiles_whole=_mining == "batch_hard",
        )
    )

# ---------------------------------------------------------------- contrastive


def _contrastive_samples(g: torch.Generator) -> list[Sample]:
    out = [Sample(args=(x, y), kwargs={"neg_margin": 2.0}, desc=name) for name, x, y in _layouts(g)]
    x, y = randn(g, 8, 3), _pk(2, 4)
    out += [
        Sample(args=(x, y), desc="defaults"),
        Sample(args=(x, y), kwargs={"pos_margin": 0.8, "neg_margin": 2.5}, desc="both margins"),
        Sample(args=(x, y), kwargs={"neg_margin": 0.7, "metric": "cosine"}, desc="cosine"),
        Sample(
            args=(x, y),
            kwargs={"pos_margin": 0.5, "neg_margin": 4.0, "metric": "squared_euclidean"},
            desc="squared_euclidean",
        ),
        Sample(args=(x, y), kwargs={"neg_margin": 3.0, "metric": "lp", "p": 1.5}, desc="L1.5"),
    ]
    return out


def _contrastive_errors() -> list[ErrorCase]:
    x, y = torch.randn(6, 3), _pk(2, 3)
    return [
        ErrorCase(
            args=(x[None], y), kwargs={}, error=ValueError, match=r"embeddings must be a 2-D tensor"
        ),
        ErrorCase(
            args=(x, y.float()),
            kwargs={},
            error=TypeError,
            match=r"labels must be an integer.*float32",
        ),
        ErrorCase(
            args=(x, y[:5]), kwargs={}, error=ValueError, match=r"labels must be a 1-D.*\(5,\)"
        ),
        ErrorCase(
            args=(x, y),
            kwargs={"neg_margin": -1.0},
            error=ValueError,
            match=r"neg_margin.*-1\.0",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, y),
            kwargs={"pos_margin": math.inf},
            error=ValueError,
            match=r"pos_margin.*inf",
            desc="",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="contrastive_loss",
        family="metric",
        formula="mean_nz_pos [d - m+]_+ + mean_nz_neg [m- - d]_+",
        functional=contrastive_loss,
        module=ContrastiveLoss,
        reference=R.contrastive_loss,
        samples=_contrastive_samples,
        error_cases=_contrastive_errors,
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, 3), randint(g, c, n)), kwargs={"pos_margin": 0.3, "neg_margin": 2.0}
        ),
    )
)

# ---------------------------------------------------------------- multi-similarity


def _ms_samples(g: torch.Generator) -> list[Sample]:
    out = [Sample(args=(x, y), kwargs={"epsilon": 0.3}, desc=name) for name, x, y in _layouts(g)]
    x, y = randn(g, 8, 3), _pk(2, 4)
    out += [
        Sample(args=(x, y), desc="defaults (paper: alpha=2, beta=50, base=0.5, eps=0.1)"),
        Sample(args=(x, y), kwargs={"mining": False}, desc="no mining"),
        Sample(
            args=(x, y),
            kwargs={"alpha": 0.5, "beta": 10.0, "base": 0.0, "epsilon": 1.0},
            desc="other temperatures",
        ),
        Sample(
            args=(randn(g, 10, 4), _unbalanced()),
            kwargs={"mining": False, "beta": 5.0},
            desc="unbalanced, no mining",
        ),
    ]
    return out


def _ms_errors() -> list[ErrorCase]:
    x, y = torch.randn(6, 3), _pk(2, 3)
    return [
        ErrorCase(
            args=(x, y[:, None]),
            kwargs={},
            error=ValueError,
            match=r"labels must be a 1-D.*\(6, 1\)",
        ),
        ErrorCase(
            args=(x.int(), y),
            kwargs={},
            error=TypeError,
            match=r"embeddings must be a floating.*int32",
        ),
        ErrorCase(
            args=(x, y),
            kwargs={"alpha": 0.0},
            error=ValueError,
            match=r"alpha must be a finite number > 0",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, y),
            kwargs={"beta": -2.0},
            error=ValueError,
            match=r"beta.*-2\.0",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, y),
            kwargs={"epsilon": -0.1},
            error=ValueError,
            match=r"epsilon.*-0\.1",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, y),
            kwargs={"base": math.nan},
            error=ValueError,
            match=r"base must not be NaN",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, y),
            kwargs={"mining": "yes"},
            error=TypeError,
            match=r"mining must be a bool",
            desc="",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="multi_similarity_loss",
        family="metric",
        formula="1/a log(1+sum_P e^{-a(S-l)}) + 1/b log(1+sum_N e^{b(S-l)})",
        functional=multi_similarity_loss,
        module=MultiSimilarityLoss,
        reference=R.multi_similarity_loss,
        samples=_ms_samples,
        error_cases=_ms_errors,
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, 3), randint(g, c, n)), kwargs={"beta": 10.0, "epsilon": 0.5}
        ),
    )
)

# ---------------------------------------------------------------- margin softmax


class _WithWeight(nn.Module):
    """Generic-suite adapter: the real Module, its ``weight`` parameter set from a positional arg.

    The suite passes tensors positionally and hyper-parameters to the constructor; a margin-
    softmax Module owns its weight, so the adapter builds one per call and copies the weight in.
    """

    loss_cls: type[nn.Module]

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.loss_cls(1, 1, **kwargs)  # validates the hyper-parameters now

    def forward(self, embeddings, labels, weight):
        module = self.loss_cls(weight.shape[1], weight.shape[0], **self.kwargs, dtype=weight.dtype)
        with torch.no_grad():
            module.weight.copy_(weight)
        return module(embeddings, labels)


class _ArcFaceWithWeight(_WithWeight):
    loss_cls = ArcFaceLoss


class _CosFaceWithWeight(_WithWeight):
    loss_cls = CosFaceLoss


# `losskit list` shows the user-facing Module behind each adapter.
_ArcFaceWithWeight.__name__ = "ArcFaceLoss"
_CosFaceWithWeight.__name__ = "CosFaceLoss"


def _margin_softmax_samples(extra: list[dict]):
    def samples(g: torch.Generator) -> list[Sample]:
        x, y, w = randn(g, 6, 4), randint(g, 3, 6), randn(g, 3, 4)
        out = [Sample(args=(x, y, w), desc="defaults")]
        out += [
            Sample(args=(x, y, w), kwargs=kw, desc=", ".join(f"{k}={v}" for k, v in kw.items()))
            for kw in extra
        ]
        # Embeddings near the opposite of their class centre: cos(theta) close to -1.
        w2 = randn(g, 3, 4)
        y2 = torch.tensor([0, 1, 2, 0, 1])
        x2 = -w2[y2] + 0.05 * randn(g, 5, 4)
        out.append(
            Sample(args=(x2, y2, w2), kwargs={**extra[0], "scale": 4.0}, desc="theta near pi")
        )
        out.append(
            Sample(
                args=(randn(g, 1, 4), randint(g, 5, 1), randn(g, 5, 4)),
                kwargs={"scale": 2.0},
                desc="B=1",
            )
        )
        return out

    return samples


def _margin_softmax_errors(margin_bad: float) -> list[ErrorCase]:
    x, y, w = torch.randn(4, 3), torch.tensor([0, 1, 2, 1]), torch.randn(3, 3)
    return [
        ErrorCase(
            args=(x, torch.tensor([0, 1, 3, 1]), w),
            kwargs={},
            error=IndexError,
            match=r"Target 3 is out of bounds",
        ),
        ErrorCase(
            args=(x, y, w[:, :2]),
            kwargs={},
            error=ValueError,
            match=r"weight must be a 2-D.*\(num_classes, 3\)",
        ),
        ErrorCase(
            args=(x, y.double(), w), kwargs={}, error=TypeError, match=r"labels must be an integer"
        ),
        ErrorCase(
            args=(x[:, None], y, w), kwargs={}, error=ValueError, match=r"embeddings must be a 2-D"
        ),
        ErrorCase(
            args=(x, y, w),
            kwargs={"scale": 0.0},
            error=ValueError,
            match=r"scale must be a finite number > 0",
            desc="",
            in_constructor=True,
        ),
        ErrorCase(
            args=(x, y, w),
            kwargs={"margin": margin_bad},
            error=ValueError,
            match=r"margin",
            desc="",
            in_constructor=True,
        ),
    ]


def _margin_softmax_random(g: torch.Generator, n: int, c: int) -> Sample:
    return Sample(args=(randn(g, n, 4), randint(g, c, n), randn(g, c, 4)), kwargs={"scale": 16.0})


register(
    LossInfo(
        name="arcface_loss",
        family="metric",
        formula="CE(s cos(theta_y + m), s cos(theta_c))",
        functional=arcface_loss,
        module=_ArcFaceWithWeight,
        reference=R.arcface_loss,
        samples=_margin_softmax_samples(
            [
                {"margin": 0.5, "scale": 8.0},
                {"margin": 0.3, "scale": 30.0, "easy_margin": True},
                {"margin": 1.2, "scale": 4.0},
                {"margin": 0.0, "scale": 10.0},
            ]
        ),
        error_cases=lambda: _margin_softmax_errors(4.0),
        random_sample=_margin_softmax_random,
        grad_args=(0, 2),
    )
)

register(
    LossInfo(
        name="cosface_loss",
        family="metric",
        formula="CE(s (cos(theta_y) - m), s cos(theta_c))",
        functional=cosface_loss,
        module=_CosFaceWithWeight,
        reference=R.cosface_loss,
        samples=_margin_softmax_samples(
            [{"margin": 0.35, "scale": 8.0}, {"margin": 0.0, "scale": 20.0}, {"margin": 1.0}]
        ),
        error_cases=lambda: _margin_softmax_errors(-0.2),
        random_sample=_margin_softmax_random,
        grad_args=(0, 2),
    )
)
