"""ArcFace / CosFace: numerics at |cos θ| = 1, closed forms, and the Module's learnable weight."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import losskit
from losskit.metric import arcface_loss, cosface_loss

F64 = torch.float64


def _data(b=6, c=4, d=5, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, d, generator=g, dtype=dtype),
        torch.randint(c, (b,), generator=g),
        torch.randn(c, d, generator=g, dtype=dtype),
    )


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("easy_margin", [False, True])
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["cos=1", "cos=-1"])
def test_arcface_gradient_finite_at_unit_cosine(sign, easy_margin, dtype):
    _, labels, w = _data(dtype=dtype)
    x = (sign * w[labels] * 3.0).requires_grad_()  # exactly aligned with (or against) its centre
    w = w.clone().requires_grad_()
    out = arcface_loss(x, labels, w, scale=64.0, margin=0.5, easy_margin=easy_margin)
    gx, gw = torch.autograd.grad(out, (x, w))
    assert torch.isfinite(out) and torch.isfinite(gx).all() and torch.isfinite(gw).all()


def test_arcface_at_unit_cosine_matches_closed_form():
    # cos θ = 1 for every row: the target logit is s·cos(m) exactly.
    _, labels, w = _data()
    x = w[labels] * 2.0
    s, m = 10.0, 0.4
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).T
    logits = s * cos.scatter(1, labels[:, None], math.cos(m))
    expected = F.cross_entropy(logits, labels)
    torch.testing.assert_close(arcface_loss(x, labels, w, s, m), expected)


def test_zero_margin_is_normalised_softmax_for_both():
    x, labels, w = _data()
    s = 16.0
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).T
    expected = F.cross_entropy(s * cos, labels, reduction="none")
    torch.testing.assert_close(arcface_loss(x, labels, w, s, 0.0, reduction="none"), expected)
    torch.testing.assert_close(cosface_loss(x, labels, w, s, 0.0, reduction="none"), expected)


def test_cosface_closed_form():
    x, labels, w = _data()
    s, m = 30.0, 0.35
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).T
    logits = s * (cos - m * F.one_hot(labels, w.shape[0]))
    torch.testing.assert_close(cosface_loss(x, labels, w, s, m), F.cross_entropy(logits, labels))


def test_arcface_fallback_branch_is_used_past_pi_minus_margin():
    # θ ≈ π: cos(θ + m) would increase again; the fallback is cos θ - m sin m.
    _, labels, w = _data()
    x = -w[labels]
    s, m = 1.0, 0.5
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).T
    target = cos.gather(1, labels[:, None]) - m * math.sin(m)
    expected = F.cross_entropy(s * cos.scatter(1, labels[:, None], target), labels)
    torch.testing.assert_close(arcface_loss(x, labels, w, s, m), expected)


def test_weight_scale_does_not_matter():
    x, labels, w = _data()
    scaled = w * torch.tensor([0.1, 3.0, 7.0, 1.0], dtype=F64)[:, None]
    torch.testing.assert_close(arcface_loss(x, labels, w), arcface_loss(x, labels, scaled))


@pytest.mark.parametrize("cls", [losskit.nn.ArcFaceLoss, losskit.nn.CosFaceLoss])
def test_module_owns_a_learnable_weight(cls):
    x, labels, _ = _data(dtype=torch.float32)
    crit = cls(5, 4, scale=8.0)
    assert isinstance(crit.weight, torch.nn.Parameter) and crit.weight.shape == (4, 5)
    assert [n for n, _ in crit.named_parameters()] == ["weight"]
    assert "weight" in crit.state_dict()
    fn = arcface_loss if cls is losskit.nn.ArcFaceLoss else cosface_loss
    torch.testing.assert_close(crit(x, labels), fn(x, labels, crit.weight, 8.0, crit.margin))
    # One SGD step on the class centres and the embeddings lowers the loss.
    x = x.requires_grad_()
    opt = torch.optim.SGD([x, *crit.parameters()], lr=0.5)
    before = crit(x, labels)
    before.backward()
    assert crit.weight.grad is not None and crit.weight.grad.abs().sum() > 0
    opt.step()
    assert crit(x, labels) < before
    assert cls is getattr(losskit.metric, cls.__name__)
    assert "num_classes=4" in repr(crit)


def test_module_dtype_and_validation():
    crit = losskit.nn.ArcFaceLoss(3, 2, dtype=F64)
    assert crit.weight.dtype == F64
    with pytest.raises(ValueError, match=r"margin must be an angle in \[0, pi\)"):
        losskit.nn.ArcFaceLoss(3, 2, margin=3.2)
    with pytest.raises(ValueError, match=r"num_classes must be an int >= 1"):
        losskit.nn.CosFaceLoss(3, 0)
    with pytest.raises(ValueError, match=r"'avg' is not a valid value for reduction"):
        losskit.nn.CosFaceLoss(3, 2, reduction="avg")
    with pytest.raises(
        ValueError, match=r"weight must be a 2-D tensor of shape \(num_classes, 4\)"
    ):
        crit(torch.randn(2, 4, dtype=F64), torch.tensor([0, 1]))


def test_empty_batch_follows_cross_entropy():
    x, labels, w = _data(b=0)
    assert torch.isnan(arcface_loss(x, labels, w))
    assert arcface_loss(x, labels, w, reduction="sum").item() == 0.0
