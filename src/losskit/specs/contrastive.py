"""Registry entries of the contrastive losses (InfoNCE, SupCon, CLIP, SigLIP).

Samples are small batches of embeddings; ``clip_loss`` and ``siglip_loss`` take the scale (and
SigLIP's bias) as differentiable positional tensors, and every chunked sample uses a
``chunk_size`` that leaves a partial last block, so the suite runs the block-wise autograd
Function (values, gradients, gradcheck) as well as the plain path. Their Modules own a learnable
log-scale (``exp`` of a parameter is not bit-equal to the functional's scale), so the Module
tests of CLIP and SigLIP live in tests/test_contrastive.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import reference as R
from .._registry import ErrorCase, LossInfo, Sample, register
from ..contrastive import clip_loss, info_nce_loss, siglip_loss, supcon_loss
from ..nn.contrastive import InfoNCELoss, SupConLoss
from ._make import randint, randn

_TENSOR_KWARGS = ("negatives", "labels")


class _InfoNCEAdapter(nn.Module):
    """Generic-suite adapter: tensor keyword arguments go to ``forward``, the rest to the Module."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.tensors = {k: kwargs.pop(k) for k in _TENSOR_KWARGS if k in kwargs}
        self.loss = InfoNCELoss(**kwargs)

    def forward(self, query, key):
        return self.loss(query, key, **self.tensors)


_InfoNCEAdapter.__name__ = "InfoNCELoss"


def _scale(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


# ---------------------------------------------------------------- InfoNCE


def _info_nce_samples(g: torch.Generator) -> list[Sample]:
    q, k = randn(g, 6, 4), randn(g, 6, 4)
    pk = torch.tensor([0, 1, 2, 0, 1, 2])
    return [
        Sample(args=(q, k), kwargs={"temperature": 0.5}, desc="in-batch negatives"),
        Sample(args=(q, k), kwargs={}, desc="defaults (tau = 0.07)"),
        Sample(args=(q, k), kwargs={"temperature": 0.3, "symmetric": True}, desc="symmetric"),
        Sample(
            args=(q, k),
            kwargs={"temperature": 0.5, "negatives": randn(g, 6, 3, 4)},
            desc="per-query negatives",
        ),
        Sample(
            args=(q, k),
            kwargs={"temperature": 0.4, "negatives": randn(g, 5, 4), "symmetric": True},
            desc="shared bank, symmetric",
        ),
        Sample(args=(q, k), kwargs={"temperature": 0.5, "labels": pk}, desc="labels P=3 K=2"),
        Sample(
            args=(q, k),
            kwargs={"temperature": 0.5, "labels": torch.tensor([0, 0, 0, 1, 2, 2])},
            desc="labels unbalanced, symmetric",
        ),
        Sample(
            args=(q, k),
            kwargs={"temperature": 0.5, "labels": torch.zeros(6, dtype=torch.int64)},
            desc="one label: no negative",
        ),
        Sample(
            args=(q, k),
            kwargs={"temperature": 0.5, "labels": pk, "negatives": randn(g, 6, 2, 4)},
            desc="labels + per-query negatives",
        ),
        Sample(args=(q, k), kwargs={"temperature": 2.0, "normalize": False}, desc="dot products"),
        Sample(args=(q, k), kwargs={"temperature": 0.5, "chunk_size": 4}, desc="chunked"),
        Sample(
            args=(q, k),
            kwargs={"temperature": 0.3, "chunk_size": 5, "symmetric": True},
            desc="chunked, symmetric",
        ),
        Sample(
            args=(q, k),
            kwargs={
                "temperature": 0.5,
                "labels": torch.tensor([0, 0, 0, 1, 2, 2]),
                "chunk_size": 4,
            },
            desc="labels unbalanced, chunked",
        ),
        Sample(
            args=(q, k),
            kwargs={
                "temperature": 0.5,
                "labels": pk,
                "negatives": randn(g, 6, 2, 4),
                "symmetric": True,
                "chunk_size": 4,
            },
            desc="labels + per-query negatives, symmetric, chunked",
        ),
        Sample(
            args=(q, k),
            kwargs={"temperature": 0.4, "negatives": randn(g, 6, 3, 4), "chunk_size": 5},
            desc="per-query negatives, chunked",
        ),
        Sample(
            args=(q, k),
            kwargs={
                "temperature": 0.4,
                "negatives": randn(g, 5, 4),
                "symmetric": True,
                "chunk_size": 4,
            },
            desc="shared bank, symmetric, chunked",
        ),
        Sample(
            args=(q, k),
            kwargs={
                "temperature": 0.5,
                "labels": torch.zeros(6, dtype=torch.int64),
                "chunk_size": 4,
            },
            desc="one label: no negative, chunked",
        ),
    ]


def _info_nce_errors() -> list[ErrorCase]:
    q, k = torch.randn(4, 3), torch.randn(4, 3)
    return [
        ErrorCase(
            args=(q, k[:3]), kwargs={}, error=ValueError, match=r"same shape.*\(4, 3\).*\(3, 3\)"
        ),
        ErrorCase(args=(q[0], k[0]), kwargs={}, error=ValueError, match=r"query must be a 2-D"),
        ErrorCase(
            args=(q.long(), k), kwargs={}, error=TypeError, match=r"query must be a floating"
        ),
        ErrorCase(
            args=(q, k),
            kwargs={"negatives": torch.randn(4, 2, 5)},
            error=ValueError,
            match=r"negatives must be \(N, M, D\) = \(4, M, 3\).*\(4, 2, 5\)",
        ),
        ErrorCase(
            args=(q, k),
            kwargs={"labels": torch.zeros(3, dtype=torch.int64)},
            error=ValueError,
            match=r"labels must be a 1-D.*\(4,\).*\(3,\)",
        ),
        ErrorCase(
            args=(q, k),
            kwargs={"labels": torch.zeros(4)},
            error=TypeError,
            match=r"labels must be an integer",
        ),
        ErrorCase(
            args=(q, k),
            kwargs={"temperature": 0.0},
            error=ValueError,
            match=r"temperature must be a finite number > 0, got 0\.0",
            in_constructor=True,
        ),
        ErrorCase(
            args=(q, k),
            kwargs={"symmetric": 1},
            error=TypeError,
            match=r"symmetric must be a bool",
            in_constructor=True,
        ),
        ErrorCase(
            args=(q, k),
            kwargs={"labels": torch.arange(4), "chunk_size": 0},
            error=ValueError,
            match=r"chunk_size must be >= 1 \(rows per block\), got 0",
            in_constructor=True,
        ),
        ErrorCase(
            args=(q, k),
            kwargs={"negatives": torch.randn(5, 3), "chunk_size": 2.5},
            error=TypeError,
            match=r"chunk_size must be an int or None, got float",
            in_constructor=True,
        ),
        ErrorCase(
            args=(q, k),
            kwargs={"group": "world"},
            error=TypeError,
            match=r"group must be a torch.distributed.ProcessGroup or None, got str",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="info_nce_loss",
        family="contrastive",
        formula="mean_p -log(e^{s_ip} / (e^{s_ip} + sum_neg e^{s_in})), s = cos / tau",
        functional=info_nce_loss,
        module=_InfoNCEAdapter,
        reference=R.info_nce_loss,
        samples=_info_nce_samples,
        error_cases=_info_nce_errors,
        grad_args=(0, 1),
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, 3), randn(g, n, 3)),
            # odd n: block by block (c rows per block), even n: the plain path
            kwargs={
                "temperature": 0.3,
                "labels": randint(g, c, n),
                "chunk_size": (n % 2) * c or None,
            },
            desc=f"random n={n} c={c}",
        ),
    )
)

# ---------------------------------------------------------------- SupCon


def _supcon_samples(g: torch.Generator) -> list[Sample]:
    f = randn(g, 6, 2, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    return [
        Sample(args=(f, y), kwargs={"temperature": 0.5, "base_temperature": 0.5}, desc="2 views"),
        Sample(args=(f, y), kwargs={}, desc="defaults (tau 0.1, base 0.07)"),
        Sample(args=(f, None), kwargs={"temperature": 0.5}, desc="SimCLR (no labels)"),
        Sample(
            args=(f, y), kwargs={"temperature": 0.5, "contrast_mode": "one"}, desc="contrast one"
        ),
        Sample(
            args=(randn(g, 5, 1, 3), torch.tensor([0, 1, 1, 2, 3])),
            kwargs={"temperature": 0.4},
            desc="one view, singleton classes (no positive)",
        ),
        Sample(
            args=(randn(g, 4, 3, 3), torch.tensor([0, 0, 1, 1])),
            kwargs={"temperature": 0.7, "normalize": False},
            desc="3 views, unnormalised",
        ),
        Sample(args=(f, y), kwargs={"temperature": 0.5, "chunk_size": 5}, desc="chunked"),
        Sample(
            args=(f, None), kwargs={"temperature": 0.5, "chunk_size": 4}, desc="SimCLR, chunked"
        ),
        Sample(
            args=(f, y),
            kwargs={"temperature": 0.5, "contrast_mode": "one", "chunk_size": 4},
            desc="contrast one, chunked",
        ),
        Sample(
            args=(randn(g, 5, 1, 3), torch.tensor([0, 1, 1, 2, 3])),
            kwargs={"temperature": 0.4, "chunk_size": 2},
            desc="one view, singleton classes, chunked",
        ),
    ]


def _supcon_errors() -> list[ErrorCase]:
    f, y = torch.randn(4, 2, 3), torch.tensor([0, 1, 0, 1])
    return [
        ErrorCase(
            args=(f[:, 0], y),
            kwargs={},
            error=ValueError,
            match=r"features must be a 3-D.*\(N, V, D\).*\(4, 3\)",
        ),
        ErrorCase(
            args=(f, y[:3]),
            kwargs={},
            error=ValueError,
            match=r"labels must be a 1-D.*\(4,\).*\(3,\)",
        ),
        ErrorCase(
            args=(f, y.float()), kwargs={}, error=TypeError, match=r"labels must be an integer"
        ),
        ErrorCase(
            args=(f, y),
            kwargs={"contrast_mode": "any"},
            error=ValueError,
            match=r"contrast_mode must be one of \('all', 'one'\), got 'any'",
            in_constructor=True,
        ),
        ErrorCase(
            args=(f, y),
            kwargs={"base_temperature": -1.0},
            error=ValueError,
            match=r"base_temperature must be a finite number > 0, got -1\.0",
            in_constructor=True,
        ),
        ErrorCase(
            args=(f, y),
            kwargs={"chunk_size": -3},
            error=ValueError,
            match=r"chunk_size must be >= 1 \(rows per block\), got -3",
            in_constructor=True,
        ),
        ErrorCase(
            args=(f, y),
            kwargs={"chunk_size": True},
            error=TypeError,
            match=r"chunk_size must be an int or None, got bool",
            in_constructor=True,
        ),
    ]


register(
    LossInfo(
        name="supcon_loss",
        family="contrastive",
        formula="-(tau/tau_b) mean_{p in P(a)} log softmax_{c != a}(z_a . z_c / tau)_p",
        functional=supcon_loss,
        module=SupConLoss,
        reference=R.supcon_loss,
        samples=_supcon_samples,
        error_cases=_supcon_errors,
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, 2, 3), randint(g, c, n)),
            kwargs={"temperature": 0.5, "chunk_size": (n % 2) * c or None},
        ),
    )
)

# ---------------------------------------------------------------- CLIP


def _clip_samples(g: torch.Generator) -> list[Sample]:
    img, txt = randn(g, 5, 4), randn(g, 5, 4)
    return [
        Sample(args=(img, txt, _scale(2.0)), kwargs={}, desc="plain"),
        Sample(args=(img, txt, _scale(3.0)), kwargs={"chunk_size": 2}, desc="chunked (2 + 2 + 1)"),
        Sample(args=(img, txt, _scale(1.5)), kwargs={"logit_bias": _scale(-0.5)}, desc="bias"),
        Sample(
            args=(img, txt, _scale(2.5)),
            kwargs={"logit_bias": _scale(0.3), "chunk_size": 3},
            desc="bias, chunked",
        ),
        Sample(
            args=(randn(g, 1, 3), randn(g, 1, 3), _scale(5.0)), kwargs={"chunk_size": 4}, desc="B=1"
        ),
        Sample(
            args=(randn(g, 7, 3, scale=3.0), randn(g, 7, 3, scale=3.0), _scale(4.0)),
            kwargs={"chunk_size": 7},
            desc="large logits, one block",
        ),
    ]


def _pair_errors(extra_args: tuple) -> list[ErrorCase]:
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    s = torch.tensor(2.0)
    return [
        ErrorCase(
            args=(a, b[:, :2], s, *extra_args),
            kwargs={},
            error=ValueError,
            match=r"image_features and text_features must have the same shape.*\(4, 3\).*\(4, 2\)",
        ),
        ErrorCase(
            args=(a[None], b, s, *extra_args),
            kwargs={},
            error=ValueError,
            match=r"image_features must be a 2-D",
        ),
        ErrorCase(
            args=(a, b, torch.ones(2), *extra_args),
            kwargs={},
            error=ValueError,
            match=r"logit_scale must be a number or a tensor with one element, got shape \(2,\)",
        ),
        ErrorCase(
            args=(a, b, math.inf, *extra_args),
            kwargs={},
            error=ValueError,
            match=r"logit_scale must be finite",
        ),
        ErrorCase(
            args=(a, b, "10", *extra_args),
            kwargs={},
            error=TypeError,
            match=r"logit_scale must be a real number",
        ),
        ErrorCase(
            args=(a, b, s, *extra_args),
            kwargs={"chunk_size": 0},
            error=ValueError,
            match=r"chunk_size must be >= 1.*got 0",
        ),
        ErrorCase(
            args=(a, b, s, *extra_args),
            kwargs={"chunk_size": 2.0},
            error=TypeError,
            match=r"chunk_size must be an int or None, got float",
        ),
    ]


register(
    LossInfo(
        name="clip_loss",
        family="contrastive",
        formula="1/2 [CE(s x t^T + b, i) + CE(s t x^T + b, i)]",
        functional=clip_loss,
        module=None,
        reference=R.clip_loss,
        samples=_clip_samples,
        error_cases=lambda: [
            *_pair_errors(()),
            ErrorCase(
                args=(torch.randn(3, 2), torch.randn(3, 2), 1.0),
                kwargs={"local_loss": "yes"},
                error=TypeError,
                match=r"local_loss must be a bool",
            ),
        ],
        grad_args=(0, 1, 2),
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, 3), randn(g, n, 3), _scale(3.0)), kwargs={"chunk_size": c}
        ),
    )
)

# ---------------------------------------------------------------- SigLIP


def _siglip_samples(g: torch.Generator) -> list[Sample]:
    img, txt = randn(g, 5, 4), randn(g, 5, 4)
    return [
        Sample(args=(img, txt, _scale(2.0), _scale(-1.0)), kwargs={}, desc="plain"),
        Sample(
            args=(img, txt, _scale(10.0), _scale(-10.0)), kwargs={}, desc="paper init (10, -10)"
        ),
        Sample(args=(img, txt, _scale(3.0), _scale(0.5)), kwargs={"chunk_size": 2}, desc="chunked"),
        Sample(
            args=(img, txt, _scale(1.0), _scale(0.0)),
            kwargs={"chunk_size": 3},
            desc="zero bias, chunked",
        ),
        Sample(
            args=(randn(g, 1, 3), randn(g, 1, 3), _scale(5.0), _scale(-2.0)),
            kwargs={"chunk_size": 1},
            desc="B=1",
        ),
    ]


register(
    LossInfo(
        name="siglip_loss",
        family="contrastive",
        formula="-sum_j log sigmoid(z_ij (s x_i . t_j + b)), z = +1 on the diagonal, -1 off it",
        functional=siglip_loss,
        module=None,
        reference=R.siglip_loss,
        samples=_siglip_samples,
        error_cases=lambda: [
            *_pair_errors((torch.tensor(-1.0),)),
            ErrorCase(
                args=(torch.randn(3, 2), torch.randn(3, 2), 1.0, 0.0),
                kwargs={"distributed": "ring"},
                error=ValueError,
                match=r"distributed must be one of \('all_gather', 'neighbour_exchange'\), got 'ring'",
            ),
        ],
        grad_args=(0, 1, 2, 3),
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, 3), randn(g, n, 3), _scale(3.0), _scale(-2.0)),
            kwargs={"chunk_size": c},
        ),
    )
)
