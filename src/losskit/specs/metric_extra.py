"""Registry entries of circle, Proxy-Anchor, sub-centre ArcFace, lifted structure and N-pair losses.

Samples are ``(embeddings (B, D), labels (B,))`` in the label layouts of :mod:`.metric` (balanced
P×K, unbalanced with a singleton, one identity, all distinct); Proxy-Anchor and sub-centre
ArcFace add their class vectors as a third positional argument, differentiable like the
embeddings. The circle loss's gradient holds its weights constant (a stop-gradient), so it is
not the derivative of the value: its entry checks the gradient against the reference's closed
form instead of finite differences.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import reference as R
from .._registry import ErrorCase, LossInfo, Sample, register
from ..metric import (
    circle_loss,
    lifted_structure_loss,
    n_pairs_loss,
    proxy_anchor_loss,
    sub_center_arcface_loss,
)
from ..nn.metric_extra import (
    CircleLoss,
    LiftedStructureLoss,
    NPairsLoss,
    ProxyAnchorLoss,
    SubCenterArcFaceLoss,
)
from ._make import randint, randn
from .metric import _layouts, _pk, _unbalanced


def _basic_errors(**kwargs) -> list[ErrorCase]:
    """Shape and dtype errors of ``(embeddings, labels)``, shared by the pair-based losses."""
    x, y = torch.randn(6, 3), _pk(2, 3)
    return [
        ErrorCase(
            args=(x[0], y),
            kwargs=kwargs,
            error=ValueError,
            match=r"embeddings must be a 2-D tensor.*\(3,\)",
        ),
        ErrorCase(
            args=(x, y[:4]),
            kwargs=kwargs,
            error=ValueError,
            match=r"labels must be a 1-D tensor.*\(6,\).*\(4,\)",
        ),
        ErrorCase(
            args=(x, y.double()),
            kwargs=kwargs,
            error=TypeError,
            match=r"labels must be an integer.*float64",
        ),
        ErrorCase(
            args=(x.long(), y),
            kwargs=kwargs,
            error=TypeError,
            match=r"embeddings must be a floating.*int64",
        ),
    ]


def _hyper(kwargs: dict, error: type[Exception], match: str) -> ErrorCase:
    x, y = torch.randn(6, 3), _pk(2, 3)
    return ErrorCase(args=(x, y), kwargs=kwargs, error=error, match=match, in_constructor=True)


# ---------------------------------------------------------------- circle


def _circle_samples(g: torch.Generator) -> list[Sample]:
    out = [
        Sample(args=(x, y), kwargs={"gamma": 4.0, "margin": 0.25}, desc=name)
        for name, x, y in _layouts(g)
    ]
    x, y = randn(g, 8, 3), _pk(2, 4)
    out += [
        Sample(args=(x, y), desc="defaults (m=0.4, gamma=80)"),
        Sample(args=(x, y), kwargs={"margin": 0.25, "gamma": 256.0}, desc="faces: gamma=256"),
        Sample(args=(x, y), kwargs={"margin": 0.0, "gamma": 1.0}, desc="m=0"),
        Sample(
            args=(randn(g, 10, 4), _unbalanced()),
            kwargs={"margin": 0.6, "gamma": 8.0},
            desc="wide margin, unbalanced",
        ),
    ]
    return out


register(
    LossInfo(
        name="circle_loss",
        family="metric",
        formula="softplus(lse_P(-g a_p (s_p - 1 + m)) + lse_N(g a_n (s_n - m)))",
        functional=circle_loss,
        module=CircleLoss,
        reference=R.circle_loss,
        reference_grad=R.circle_loss_grad,
        samples=_circle_samples,
        error_cases=lambda: [
            *_basic_errors(),
            _hyper({"margin": -0.1}, ValueError, r"margin must be a finite number >= 0.*-0\.1"),
            _hyper({"gamma": 0.0}, ValueError, r"gamma must be a finite number > 0"),
            _hyper({"gamma": math.inf}, ValueError, r"gamma.*inf"),
        ],
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, 3), randint(g, c, n)), kwargs={"gamma": 16.0}
        ),
        # The weights alpha are stop-gradients: the gradient is checked against the reference's
        # closed form (reference_grad), not finite differences of the value.
        differentiable=False,
    )
)

# ---------------------------------------------------------------- lifted structure


def _lifted_samples(form: str):
    def samples(g: torch.Generator) -> list[Sample]:
        f = {"form": form}
        out = [
            Sample(args=(x, y), kwargs={**f, "neg_margin": 2.0}, desc=name)
            for name, x, y in _layouts(g)
        ]
        x, y = randn(g, 8, 3), _pk(2, 4)
        out += [
            Sample(args=(x, y), kwargs=f, desc="defaults"),
            Sample(args=(x, y), kwargs={**f, "neg_margin": 3.0, "pos_margin": 0.5}, desc="m+"),
            Sample(args=(x, y), kwargs={**f, "neg_margin": 0.5, "metric": "cosine"}, desc="cosine"),
            Sample(
                args=(x, y),
                kwargs={**f, "neg_margin": 4.0, "metric": "squared_euclidean"},
                desc="squared_euclidean",
            ),
            Sample(
                args=(x, y),
                kwargs={**f, "neg_margin": 3.0, "metric": "lp", "p": 1.0},
                desc="L1",
            ),
        ]
        return out

    return samples


def _lifted_errors(form: str):
    def errors() -> list[ErrorCase]:
        f = {"form": form}
        return [
            *_basic_errors(**f),
            _hyper({**f, "neg_margin": -1.0}, ValueError, r"neg_margin.*>= 0.*-1\.0"),
            _hyper({**f, "pos_margin": math.inf}, ValueError, r"pos_margin.*inf"),
            _hyper({"form": "lifted"}, ValueError, r"form must be one of.*'lifted'"),
            _hyper({**f, "metric": "manhattan"}, ValueError, r"metric.*'manhattan'"),
        ]

    return errors


for _form, _formula, _whole in (
    ("original", "1/2 [log(sum_Ni e^{m-D} + sum_Nj e^{m-D}) + D_ij - m+]_+^2", False),
    ("generalized", "[log sum_P e^{D - m+} + log sum_N e^{m- - D}]_+", True),
):
    register(
        LossInfo(
            name="lifted_structure" + ("" if _form == "original" else "_generalized"),
            family="metric",
            formula=_formula,
            functional=lifted_structure_loss,
            module=LiftedStructureLoss,
            reference=R.lifted_structure_loss,
            samples=_lifted_samples(_form),
            error_cases=_lifted_errors(_form),
            random_sample=lambda g, n, c, f=_form: Sample(
                args=(randn(g, n, 3), randint(g, c, n)), kwargs={"form": f, "neg_margin": 2.0}
            ),
            # "original" lists one loss per positive pair for reduction="none".
            compiles_whole=_whole,
        )
    )

# ---------------------------------------------------------------- N-pair


def _n_pairs_samples(g: torch.Generator) -> list[Sample]:
    out = [Sample(args=(x, y), desc=name) for name, x, y in _layouts(g)]
    out += [
        Sample(args=(randn(g, 8, 3), _pk(4, 2)), desc="4 pairs (K=2)"),
        Sample(
            args=(randn(g, 9, 4, scale=0.5), torch.tensor([5, 1, 5, 9, 1, 9, 7, 1, 5])), desc="K=3"
        ),
        Sample(args=(randn(g, 4, 3), torch.tensor([0, 1, 1, 0])), desc="2 pairs"),
    ]
    return out


register(
    LossInfo(
        name="n_pairs_loss",
        family="metric",
        formula="mean_c -log softmax_c'(a_c . p_c')[c]",
        functional=n_pairs_loss,
        module=NPairsLoss,
        reference=R.n_pairs_loss,
        samples=_n_pairs_samples,
        error_cases=_basic_errors,
        random_sample=lambda g, n, c: Sample(args=(randn(g, n, 3), randint(g, c, n))),
    )
)

# ---------------------------------------------------------------- losses with class vectors


class _WithVectors(nn.Module):
    """Generic-suite adapter: the real Module, its class-vector parameter swapped for an argument.

    The suite passes tensors positionally and hyper-parameters to the constructor; these Modules
    own their proxies / centres, so each call builds one and puts the given tensor in its place.
    """

    loss_cls: type[nn.Module]
    param: str

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.loss_cls(1, 1, **kwargs)  # validates the hyper-parameters now

    def forward(self, embeddings, labels, vectors):
        module = self.loss_cls(1, 1, **self.kwargs)
        delattr(module, self.param)
        setattr(module, self.param, vectors)
        return module(embeddings, labels)


class _ProxyAnchorWithProxies(_WithVectors):
    loss_cls, param = ProxyAnchorLoss, "proxies"


class _SubCenterWithWeight(_WithVectors):
    loss_cls, param = SubCenterArcFaceLoss, "weight"


# `losskit list` shows the user-facing Module behind each adapter.
_ProxyAnchorWithProxies.__name__ = "ProxyAnchorLoss"
_SubCenterWithWeight.__name__ = "SubCenterArcFaceLoss"


def _proxy_samples(g: torch.Generator) -> list[Sample]:
    x, y, p = randn(g, 6, 4), randint(g, 4, 6), randn(g, 5, 4)  # some proxies without samples
    return [
        Sample(args=(x, y, p), kwargs={"alpha": 4.0}, desc="alpha=4"),
        Sample(args=(x, y, p), desc="defaults (margin=0.1, alpha=32)"),
        Sample(args=(x, y, p), kwargs={"margin": 0.0, "alpha": 1.0}, desc="no margin"),
        Sample(args=(randn(g, 9, 3), _pk(3, 3), randn(g, 3, 3)), kwargs={"alpha": 8.0}, desc="PxK"),
        Sample(args=(randn(g, 1, 4), randint(g, 3, 1), randn(g, 3, 4)), desc="B=1"),
    ]


def _vector_errors(vectors: torch.Tensor, name: str, bad_shape: tuple[int, ...], shape: str):
    def errors() -> list[ErrorCase]:
        x, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
        v = vectors
        return [
            ErrorCase(
                args=(x, torch.tensor([0, 1, 3, 1]), v),
                kwargs={},
                error=IndexError,
                match=r"Target 3 is out of bounds",
            ),
            ErrorCase(
                args=(x, y, torch.randn(*bad_shape)),
                kwargs={},
                error=ValueError,
                match=rf"{name} must be a .*{shape}",
            ),
            ErrorCase(
                args=(x, y.double(), v), kwargs={}, error=TypeError, match=r"labels must be an int"
            ),
            ErrorCase(
                args=(x[:, None], y, v),
                kwargs={},
                error=ValueError,
                match=r"embeddings must be 2-D|embeddings must be a 2-D",
            ),
            ErrorCase(
                args=(x, y, v.long()),
                kwargs={},
                error=TypeError,
                match=rf"{name} must be a floating",
            ),
        ]

    return errors


register(
    LossInfo(
        name="proxy_anchor_loss",
        family="metric",
        formula="mean_P+ log(1+sum_X+ e^{-a(s-d)}) + mean_P log(1+sum_X- e^{a(s+d)})",
        functional=proxy_anchor_loss,
        module=_ProxyAnchorWithProxies,
        reference=R.proxy_anchor_loss,
        samples=_proxy_samples,
        error_cases=lambda: [
            *_vector_errors(torch.randn(3, 3), "proxies", (3, 2), r"\(num_classes, 3\)")(),
            ErrorCase(
                args=(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]), torch.randn(3, 3)),
                kwargs={"alpha": 0.0},
                error=ValueError,
                match=r"alpha must be a finite number > 0",
                in_constructor=True,
            ),
            ErrorCase(
                args=(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]), torch.randn(3, 3)),
                kwargs={"margin": -1.0},
                error=ValueError,
                match=r"margin must be a finite number >= 0",
                in_constructor=True,
            ),
        ],
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, 4), randint(g, c, n), randn(g, c, 4)), kwargs={"alpha": 8.0}
        ),
        grad_args=(0, 2),
    )
)


def _sub_center_samples(g: torch.Generator) -> list[Sample]:
    x, y, w = randn(g, 6, 4), randint(g, 3, 6), randn(g, 3, 2, 4)
    # Embeddings near the opposite of every centre of their class: theta close to pi.
    w2 = randn(g, 3, 1, 4)
    y2 = torch.tensor([0, 1, 2, 0, 1])
    x2 = -w2[y2, 0] + 0.05 * randn(g, 5, 4)
    return [
        Sample(args=(x, y, w), kwargs={"scale": 8.0}, desc="K=2, s=8"),
        Sample(args=(x, y, w), desc="defaults (s=64, m=0.5)"),
        Sample(args=(x, y, randn(g, 3, 3, 4)), kwargs={"scale": 4.0, "margin": 1.2}, desc="K=3"),
        Sample(args=(x, y, randn(g, 3, 1, 4)), kwargs={"scale": 16.0}, desc="K=1 (ArcFace)"),
        Sample(args=(x2, y2, w2), kwargs={"scale": 4.0}, desc="theta near pi"),
        Sample(
            args=(randn(g, 1, 4), randint(g, 5, 1), randn(g, 5, 2, 4)),
            kwargs={"scale": 2.0},
            desc="B=1",
        ),
    ]


register(
    LossInfo(
        name="sub_center_arcface_loss",
        family="metric",
        formula="CE(s cos(theta_y + m), s cos(theta_c)), cos = max_k cos to sub-centre k",
        functional=sub_center_arcface_loss,
        module=_SubCenterWithWeight,
        reference=R.sub_center_arcface_loss,
        samples=_sub_center_samples,
        error_cases=lambda: [
            *_vector_errors(
                torch.randn(3, 2, 3), "weight", (3, 3), r"\(num_classes, sub_centers, 3\)"
            )(),
            ErrorCase(
                args=(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]), torch.randn(3, 2, 3)),
                kwargs={"margin": 4.0},
                error=ValueError,
                match=r"margin must be an angle in \[0, pi\)",
                in_constructor=True,
            ),
            ErrorCase(
                args=(torch.randn(4, 3), torch.tensor([0, 1, 2, 1]), torch.randn(3, 2, 3)),
                kwargs={"scale": -1.0},
                error=ValueError,
                match=r"scale must be a finite number > 0",
                in_constructor=True,
            ),
        ],
        random_sample=lambda g, n, c: Sample(
            args=(randn(g, n, 4), randint(g, c, n), randn(g, c, 2, 4)), kwargs={"scale": 16.0}
        ),
        grad_args=(0, 2),
    )
)
