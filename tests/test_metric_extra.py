"""Circle, Proxy-Anchor, sub-centre ArcFace, lifted structure and N-pair losses beyond the generic
suite: pytorch-metric-learning 2.9 as a peer (optional), whole-graph compilation with gradients,
NaN for non-finite embeddings, B×B memory at a batch where B×B×B could not exist, the Modules.

Oracles: the peer library, the NumPy references (through the registry), torch's cross entropy
and losskit's ArcFace (separately tested code) for the closed forms, eager mode for compile.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import losskit
from losskit import reference as R
from losskit.metric import (
    circle_loss,
    lifted_structure_loss,
    n_pairs_loss,
    proxy_anchor_loss,
    sub_center_arcface_loss,
)

F64 = torch.float64


def _batch(b=12, d=5, seed=0, labels=None, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=dtype)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3, 3]) if labels is None else labels
    return x, y


def _proxies(c=5, d=5, seed=1, k=None):
    g = torch.Generator().manual_seed(seed)
    shape = (c, d) if k is None else (c, k, d)
    return torch.randn(*shape, generator=g, dtype=F64)


# ---------------------------------------------------------------- calls that go through the seam


def _calls():
    """(name, fn(x, vectors) -> loss, needs class vectors)."""
    y = _batch()[1]
    return [
        ("circle", lambda x, v: circle_loss(x, y, gamma=16.0), None),
        ("lifted", lambda x, v: lifted_structure_loss(x, y), None),
        ("lifted_generalized", lambda x, v: lifted_structure_loss(x, y, form="generalized"), None),
        ("n_pairs", lambda x, v: n_pairs_loss(x, y), None),
        ("proxy_anchor", lambda x, v: proxy_anchor_loss(x, y, v, alpha=8.0), _proxies()),
        (
            "sub_center",
            lambda x, v: sub_center_arcface_loss(x, y, v, scale=8.0),
            _proxies(k=3),
        ),
    ]


CALLS = {name: (fn, v) for name, fn, v in _calls()}


@pytest.mark.parametrize("name", list(CALLS))
def test_compiles_whole_forward_and_backward_equal_to_eager(name):
    fn, v = CALLS[name]
    torch._dynamo.reset()
    x = _batch(dtype=torch.float32)[0]
    v = None if v is None else v.float()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    grads = []
    for f in (fn, compiled):
        xi = x.clone().requires_grad_()
        vi = None if v is None else v.clone().requires_grad_()
        out = f(xi, vi)
        inputs = [xi] if vi is None else [xi, vi]
        grads.append((out, torch.autograd.grad(out, inputs)))
    (want, want_g), (got, got_g) = grads
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for a, b in zip(got_g, want_g, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("name", list(CALLS))
def test_a_non_finite_embedding_gives_nan(name, bad):
    fn, v = CALLS[name]
    x = _batch()[0]
    x[3, 1] = bad
    assert torch.isnan(fn(x, v))


@pytest.mark.parametrize("name", list(CALLS))
def test_every_loss_dispatches_through_its_backends_record(name):
    fn, v = CALLS[name]
    x = _batch()[0]
    with losskit.use_backend("formula"):
        value = fn(x, v)
    torch.testing.assert_close(value, fn(x, v), rtol=0, atol=0)
    with losskit.use_backend("kernel"), pytest.raises(RuntimeError, match="has no 'kernel'"):
        fn(x, v)


def test_registry_entries_point_at_the_functionals_records():
    from losskit._registry import get

    for name, fn in [
        ("circle_loss", circle_loss),
        ("lifted_structure", lifted_structure_loss),
        ("n_pairs_loss", n_pairs_loss),
        ("proxy_anchor_loss", proxy_anchor_loss),
        ("sub_center_arcface_loss", sub_center_arcface_loss),
    ]:
        assert get(name).dispatch_record is fn.backends
        assert fn.backends.names == ("formula",)


@pytest.mark.parametrize(
    "loss",
    [
        lambda x, y: circle_loss(x, y, gamma=16.0),
        lambda x, y: lifted_structure_loss(x, y),
    ],
    ids=["circle", "lifted"],
)
def test_batch_of_2048_in_b_squared_memory(loss):
    # A B×B×B float32 tensor would be 32 GiB here: finishing proves none is built.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 16, generator=g).requires_grad_()
    y = torch.randint(64, (2048,), generator=g)
    out = loss(x, y)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(x.grad).all()


# ---------------------------------------------------------------- closed forms and conventions


def test_circle_gradient_holds_the_weights_constant():
    # The reference's closed form treats alpha as a constant; the derivative of the value would
    # differ (the loss is not the potential of its gradient): check both statements.
    x, y = _batch()
    xg = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(circle_loss(xg, y, gamma=4.0), xg)
    expected = R.circle_loss_grad(x.numpy(), y.numpy(), gamma=4.0)
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-9, atol=1e-12)
    h, e = 1e-6, torch.zeros_like(x)
    e[0, 0] = h
    fd = (circle_loss(x + e, y, gamma=4.0) - circle_loss(x - e, y, gamma=4.0)) / (2 * h)
    assert abs(float(fd) - float(g[0, 0])) > 1e-4


def test_n_pairs_with_two_samples_per_class_is_cross_entropy_of_anchors_on_positives():
    g = torch.Generator().manual_seed(3)
    a, p = torch.randn(5, 4, generator=g, dtype=F64), torch.randn(5, 4, generator=g, dtype=F64)
    x = torch.cat([a, p])
    y = torch.arange(5).repeat(2)
    expected = F.cross_entropy(a @ p.T, torch.arange(5))
    torch.testing.assert_close(n_pairs_loss(x, y), expected)
    per_row = n_pairs_loss(x, y, reduction="none")
    torch.testing.assert_close(
        per_row[:5], F.cross_entropy(a @ p.T, torch.arange(5), reduction="none")
    )
    assert not per_row[5:].any()


def test_sub_center_with_one_centre_per_class_is_arcface():
    x, y = _batch()
    w = _proxies()
    for reduction in ("none", "mean", "sum"):
        torch.testing.assert_close(
            sub_center_arcface_loss(x, y, w[:, None], scale=10.0, margin=0.3, reduction=reduction),
            losskit.metric.arcface_loss(x, y, w, scale=10.0, margin=0.3, reduction=reduction),
        )


def test_sub_center_uses_the_nearest_centre_of_each_class():
    x, y = _batch()
    centre = _proxies(k=2)
    centre[y[0], 1] = x[0] * 3.0  # sample 0 sits on a sub-centre of its class: theta = 0
    per = sub_center_arcface_loss(x, y, centre, scale=8.0, reduction="none")
    cos = F.normalize(centre, dim=2) @ F.normalize(x[0], dim=0)  # (C, K)
    logits = 8.0 * cos.max(1).values
    logits[y[0]] = 8.0 * math.cos(0.5)
    torch.testing.assert_close(per[0], F.cross_entropy(logits[None], y[:1]))


def test_proxy_anchor_without_any_positive_for_a_proxy_averages_over_proxies_with_positives():
    x, y = _batch(labels=torch.tensor([0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1]))
    proxies = _proxies(c=4)  # proxies 2 and 3 have no sample
    xn, pn = F.normalize(x, dim=1), F.normalize(proxies, dim=1)
    cos = xn @ pn.T
    alpha, delta = 16.0, 0.1
    pos = [torch.log1p(torch.exp(-alpha * (cos[y == c, c] - delta)).sum()) for c in range(2)]
    neg = [torch.log1p(torch.exp(alpha * (cos[y != c, c] + delta)).sum()) for c in range(4)]
    expected = sum(pos) / 2 + sum(neg) / 4
    torch.testing.assert_close(proxy_anchor_loss(x, y, proxies, delta, alpha), expected)


@pytest.mark.parametrize("form", ["original", "generalized"])
def test_lifted_structure_one_identity_or_all_distinct_is_zero_with_zero_gradient(form):
    for y in (torch.zeros(6, dtype=torch.int64), torch.arange(6)):
        x = torch.randn(6, 3, dtype=F64, requires_grad=True)
        out = lifted_structure_loss(x, y, form=form)
        (g,) = torch.autograd.grad(out, x)
        assert out == 0 and not g.any()


# ---------------------------------------------------------------- the Modules


def test_proxy_anchor_module_learns_its_proxies():
    torch.manual_seed(0)
    criterion = losskit.nn.ProxyAnchorLoss(embedding_dim=5, num_classes=4, alpha=8.0)
    assert criterion.proxies.shape == (4, 5) and criterion.proxies.requires_grad
    x, y = _batch(dtype=torch.float32)
    criterion(x, y).backward()
    assert criterion.proxies.grad is not None and criterion.proxies.grad.abs().sum() > 0
    assert "num_classes=4" in repr(criterion)
    with pytest.raises(ValueError, match=r"num_classes must be an int >= 1, got 0"):
        losskit.nn.ProxyAnchorLoss(5, 0)
    with pytest.raises(IndexError, match="Target 3 is out of bounds"):
        losskit.nn.ProxyAnchorLoss(5, 3)(x, y)


def test_sub_center_module_owns_k_centres_per_class():
    criterion = losskit.nn.SubCenterArcFaceLoss(5, num_classes=4, sub_centers=3, dtype=F64)
    assert criterion.weight.shape == (4, 3, 5) and criterion.weight.dtype == F64
    x, y = _batch()
    criterion(x, y).backward()
    assert criterion.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"sub_centers must be an int >= 1, got 0"):
        losskit.nn.SubCenterArcFaceLoss(5, 4, sub_centers=0)
    with pytest.raises(ValueError, match=r"margin must be an angle in \[0, pi\)"):
        losskit.nn.SubCenterArcFaceLoss(5, 4, margin=3.5)


def test_modules_are_exported_from_nn_and_metric():
    for name in ("CircleLoss", "LiftedStructureLoss", "NPairsLoss", "ProxyAnchorLoss"):
        assert getattr(losskit.nn, name) is getattr(losskit.metric, name)
    with pytest.raises(ValueError, match=r"form must be one of"):
        losskit.nn.LiftedStructureLoss(form="lifted")


# ---------------------------------------------------------------- pytorch-metric-learning 2.9


@pytest.fixture(scope="module")
def pml():
    return pytest.importorskip("pytorch_metric_learning.losses")


def _both_grads(ours, theirs, x):
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = ours(xa), theirs(xb)
    (ga,) = torch.autograd.grad(a, xa)
    (gb,) = torch.autograd.grad(b, xb)
    torch.testing.assert_close(a, b.to(a.dtype), rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(ga, gb, rtol=1e-8, atol=1e-10)


LABELS = {
    "P=4xK=3": torch.arange(4).repeat(3),
    "unbalanced": torch.tensor([0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3, 3]),
    "with a singleton": torch.tensor([0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3, 4]),
}


@pytest.mark.parametrize("labels", list(LABELS))
@pytest.mark.parametrize(("m", "gamma"), [(0.4, 80.0), (0.25, 16.0)])
def test_circle_matches_pml(pml, labels, m, gamma):
    x, y = _batch(labels=LABELS[labels])
    _both_grads(
        lambda e: circle_loss(e, y, m, gamma), lambda e: pml.CircleLoss(m=m, gamma=gamma)(e, y), x
    )


@pytest.mark.parametrize("labels", list(LABELS))
def test_lifted_structure_matches_pml_on_normalised_embeddings(pml, labels):
    x, y = _batch(labels=LABELS[labels])
    # PML's LpDistance normalises the embeddings by default; ours takes them as given.
    _both_grads(
        lambda e: lifted_structure_loss(F.normalize(e, dim=1), y, 1.2, 0.1),
        lambda e: pml.LiftedStructureLoss(neg_margin=1.2, pos_margin=0.1)(e, y),
        x,
    )


@pytest.mark.parametrize("labels", ["P=4xK=3", "unbalanced"])
def test_generalized_lifted_structure_matches_pml_without_singletons(pml, labels):
    # PML keeps the negative term of an anchor without positives; we skip it: no singleton here.
    x, y = _batch(labels=LABELS[labels])
    _both_grads(
        lambda e: lifted_structure_loss(F.normalize(e, dim=1), y, 0.8, form="generalized"),
        lambda e: pml.GeneralizedLiftedStructureLoss(neg_margin=0.8)(e, y),
        x,
    )


@pytest.mark.parametrize("labels", list(LABELS))
def test_n_pairs_matches_pml_on_normalised_embeddings(pml, labels):
    x, y = _batch(labels=LABELS[labels])
    # PML's DotProductSimilarity normalises by default; Sohn's loss is on raw inner products.
    _both_grads(
        lambda e: n_pairs_loss(F.normalize(e, dim=1), y), lambda e: pml.NPairsLoss()(e, y), x
    )


@pytest.mark.parametrize(("margin", "alpha"), [(0.1, 32.0), (0.0, 4.0)])
def test_proxy_anchor_matches_pml_values_and_both_gradients(pml, margin, alpha):
    x, y = _batch()
    torch.manual_seed(0)
    theirs = pml.ProxyAnchorLoss(num_classes=6, embedding_size=5, margin=margin, alpha=alpha)
    theirs = theirs.double()
    proxies = theirs.proxies.detach().clone().requires_grad_()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = proxy_anchor_loss(xa, y, proxies, margin, alpha), theirs(xb, y)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    ga = torch.autograd.grad(a, (xa, proxies))
    gb = torch.autograd.grad(b, (xb, theirs.proxies))
    for u, v in zip(ga, gb, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-8, atol=1e-10)


def test_sub_center_arcface_matches_pml_with_margin_in_degrees(pml):
    x, y = _batch()
    torch.manual_seed(0)
    theirs = pml.SubCenterArcFaceLoss(num_classes=5, embedding_size=5, margin=28.6, scale=16)
    theirs = theirs.double()
    # PML's W is (D, C*K), class c's centres in columns c*K ... c*K+K-1.
    weight = theirs.W.detach().T.reshape(5, 3, 5).clone().requires_grad_()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a = sub_center_arcface_loss(xa, y, weight, scale=16.0, margin=math.radians(28.6))
    b = theirs(xb, y)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    ga = torch.autograd.grad(a, (xa, weight))
    gb = torch.autograd.grad(b, (xb, theirs.W))
    torch.testing.assert_close(ga[0], gb[0], rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(ga[1], gb[1].T.reshape(5, 3, 5), rtol=1e-7, atol=1e-9)
