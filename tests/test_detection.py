"""Detection losses (losskit.detection): mmdetection's and ultralytics' formulas, the GFL/VFL/Libra
papers' closed forms, avg_factor, empty batches, Modules, and compilation.

mmdetection is not installable here (it needs mmcv): its functions (mmdet/models/losses
gfocal_loss.py, varifocal_loss.py, balanced_l1_loss.py, utils.weight_reduce_loss) are written out
below as the oracle, with the eps that ``weight_reduce_loss`` adds to ``avg_factor``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import losskit
from losskit import reference as R

F64 = torch.float64
REDUCTIONS = ("none", "mean", "sum")


# ---------------------------------------------------------------- mmdetection, written out


def mmdet_weight_reduce_loss(loss, weight=None, reduction="mean", avg_factor=None):
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]
    if reduction == "mean":
        return loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)
    assert reduction == "none"
    return loss


def mmdet_quality_focal_loss(pred, target, beta=2.0):
    label, score = target
    pred_sigmoid = pred.sigmoid()
    scale_factor = pred_sigmoid
    zerolabel = scale_factor.new_zeros(pred.shape)
    loss = TF.binary_cross_entropy_with_logits(pred, zerolabel, reduction="none")
    loss = loss * scale_factor.pow(beta)
    bg_class_ind = pred.size(1)
    pos = ((label >= 0) & (label < bg_class_ind)).nonzero().squeeze(1)
    pos_label = label[pos].long()
    scale_factor = score[pos] - pred_sigmoid[pos, pos_label]
    loss[pos, pos_label] = TF.binary_cross_entropy_with_logits(
        pred[pos, pos_label], score[pos], reduction="none"
    ) * scale_factor.abs().pow(beta)
    return loss.sum(dim=1, keepdim=False)


def mmdet_quality_focal_loss_tensor_target(pred, target, beta=2.0):
    pred_sigmoid = pred.sigmoid()
    scale_factor = pred_sigmoid
    target = target.type_as(pred)
    zerolabel = scale_factor.new_zeros(pred.shape)
    loss = TF.binary_cross_entropy_with_logits(pred, zerolabel, reduction="none")
    loss = loss * scale_factor.pow(beta)
    pos = target != 0
    scale_factor = target[pos] - pred_sigmoid[pos]
    loss[pos] = TF.binary_cross_entropy_with_logits(
        pred[pos], target[pos], reduction="none"
    ) * scale_factor.abs().pow(beta)
    return loss.sum(dim=1, keepdim=False)


def mmdet_distribution_focal_loss(pred, label):
    dis_left = label.long()
    dis_right = dis_left + 1
    weight_left = dis_right.float() - label
    weight_right = label - dis_left.float()
    return (
        TF.cross_entropy(pred, dis_left, reduction="none") * weight_left
        + TF.cross_entropy(pred, dis_right, reduction="none") * weight_right
    )


def mmdet_varifocal_loss(pred, target, alpha=0.75, gamma=2.0, iou_weighted=True):
    pred_sigmoid = pred.sigmoid()
    target = target.type_as(pred)
    if iou_weighted:
        focal_weight = (
            target * (target > 0.0).float()
            + alpha * (pred_sigmoid - target).abs().pow(gamma) * (target <= 0.0).float()
        )
    else:
        focal_weight = (target > 0.0).float() + alpha * (pred_sigmoid - target).abs().pow(gamma) * (
            target <= 0.0
        ).float()
    return TF.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal_weight


def mmdet_balanced_l1_loss(pred, target, beta=1.0, alpha=0.5, gamma=1.5):
    diff = torch.abs(pred - target)
    b = np.e ** (gamma / alpha) - 1
    return torch.where(
        diff < beta,
        alpha / b * (b * diff + 1) * torch.log(b * diff / beta + 1) - alpha * diff,
        gamma * diff + gamma / b - alpha * beta,
    )


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def _compare(ours_fn, theirs_fn, x, rtol=1e-10, atol=1e-12):
    a, b = _leaf(x), _leaf(x)
    ours, theirs = ours_fn(a), theirs_fn(b)
    torch.testing.assert_close(ours, theirs, rtol=rtol, atol=atol)
    up = torch.rand(ours.shape, generator=torch.Generator().manual_seed(0), dtype=ours.dtype)
    torch.testing.assert_close(
        torch.autograd.grad(ours, a, up)[0],
        torch.autograd.grad(theirs, b, up)[0],
        rtol=rtol,
        atol=atol,
    )


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- quality focal loss


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [2.0, 1.5])
def test_qfl_matches_mmdetection(reduction, beta):
    g = _gen(1)
    x = torch.randn(12, 5, generator=g, dtype=F64) * 3
    labels = torch.randint(0, 6, (12,), generator=g)  # 5 = background
    scores = torch.rand(12, generator=g, dtype=F64)
    weight = torch.rand(12, generator=g, dtype=F64)
    _compare(
        lambda a: losskit.quality_focal_loss(
            a, (labels, scores), weight, beta=beta, reduction=reduction
        ),
        lambda a: mmdet_weight_reduce_loss(
            mmdet_quality_focal_loss(a, (labels, scores), beta), weight, reduction
        ),
        x,
    )


def test_qfl_tensor_target_matches_mmdetection_and_the_pair_form():
    g = _gen(2)
    x = torch.randn(9, 4, generator=g, dtype=F64) * 2
    labels = torch.randint(0, 5, (9,), generator=g)
    scores = torch.rand(9, generator=g, dtype=F64)
    dense = torch.zeros(9, 4, dtype=F64)
    pos = labels < 4
    dense[pos, labels[pos]] = scores[pos]
    _compare(
        lambda a: losskit.quality_focal_loss(a, dense, reduction="none"),
        lambda a: mmdet_quality_focal_loss_tensor_target(a, dense),
        x,
    )
    torch.testing.assert_close(
        losskit.quality_focal_loss(x, dense, reduction="none"),
        losskit.quality_focal_loss(x, (labels, scores), reduction="none"),
        rtol=0,
        atol=0,
    )


def test_qfl_with_beta_0_is_bce_summed_over_classes():
    g = _gen(3)
    x = torch.randn(2, 5, 3, generator=g, dtype=F64)
    y = torch.rand(2, 5, 3, generator=g, dtype=F64)
    ours = losskit.quality_focal_loss(x, y, beta=0.0, reduction="none")
    torch.testing.assert_close(
        ours, TF.binary_cross_entropy_with_logits(x, y, reduction="none").sum(-1)
    )


def test_qfl_gradient_is_finite_where_the_score_equals_the_quality():
    # |y - sigma|^beta has an infinite slope at 0 for beta < 1; the loss's gradient is still
    # finite (autograd of mmdetection's pow gives NaN there).
    x = torch.tensor([[0.0, -2.0]], dtype=F64, requires_grad=True)
    y = torch.tensor([[0.5, 0.0]], dtype=F64)
    for beta in (0.5, 1.0, 2.0):
        (g,) = torch.autograd.grad(losskit.quality_focal_loss(x, y, beta=beta), x)
        assert torch.isfinite(g).all()


# ---------------------------------------------------------------- distribution focal loss


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_dfl_matches_mmdetection_and_ultralytics_below_the_last_bin(reduction):
    g = _gen(4)
    x = torch.randn(16, 8, generator=g, dtype=F64) * 2
    t = torch.rand(16, generator=g, dtype=F64) * (7 - 0.01)  # their clamp: below n
    t[:3] = torch.tensor([0.0, 3.0, 5.0], dtype=F64)
    w = torch.rand(16, generator=g, dtype=F64)
    _compare(
        lambda a: losskit.distribution_focal_loss(a, t, w, reduction=reduction),
        lambda a: mmdet_weight_reduce_loss(mmdet_distribution_focal_loss(a, t), w, reduction),
        x,
    )

    def ultralytics_dfl(pred_dist, target):  # ultralytics DFLoss, per edge (before .mean(-1))
        tl = target.long()
        tr = tl + 1
        wl = tr - target
        wr = 1 - wl
        return (
            TF.cross_entropy(pred_dist, tl, reduction="none") * wl
            + TF.cross_entropy(pred_dist, tr, reduction="none") * wr
        )

    torch.testing.assert_close(
        losskit.distribution_focal_loss(x, t, reduction="none"), ultralytics_dfl(x, t)
    )


def test_dfl_target_at_the_last_bin_puts_its_mass_there():
    x = torch.randn(3, 5, dtype=F64, generator=_gen(5))
    t = torch.full((3,), 4.0, dtype=F64)
    expected = -torch.log_softmax(x, -1)[:, 4]
    torch.testing.assert_close(losskit.distribution_focal_loss(x, t, reduction="none"), expected)


@pytest.mark.parametrize("t", [0.0, 0.3, 2.5, 3.75, 4.0])
def test_dfl_minimum_is_the_two_hot_distribution_whose_expectation_is_the_target(t):
    # The paper's argument: the optimum puts mass (r - t, t - l) on the two bins around t; its
    # expectation is t and the loss there is the two-hot's entropy (not 0), with zero gradient.
    n = 4
    left = min(math.floor(t), n - 1)
    two_hot = torch.zeros(n + 1, dtype=F64)
    two_hot[left], two_hot[left + 1] = left + 1 - t, t - left
    logits = torch.log(two_hot.clamp_min(1e-300)).requires_grad_(True)
    target = torch.tensor(t, dtype=F64)
    loss = losskit.distribution_focal_loss(logits, target, reduction="sum")
    entropy = -sum(p * math.log(p) for p in two_hot.tolist() if p > 0)
    assert loss.item() == pytest.approx(entropy, abs=1e-12)
    (g,) = torch.autograd.grad(loss, logits)
    assert g.abs().max().item() < 1e-12
    expectation = (torch.softmax(logits.detach(), -1) * torch.arange(n + 1.0)).sum()
    assert expectation.item() == pytest.approx(t)


# ---------------------------------------------------------------- varifocal loss


@pytest.mark.parametrize("iou_weighted", [True, False])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_vfl_matches_mmdetection(iou_weighted, reduction):
    g = _gen(6)
    x = torch.randn(10, 4, generator=g, dtype=F64) * 3
    q = torch.rand(10, 4, generator=g, dtype=F64) * (torch.rand(10, 4, generator=g) < 0.3)
    w = torch.rand(10, 1, generator=g, dtype=F64)
    _compare(
        lambda a: losskit.varifocal_loss(
            a, q, w, alpha=0.6, gamma=1.5, iou_weighted=iou_weighted, reduction=reduction
        ),
        lambda a: mmdet_weight_reduce_loss(
            mmdet_varifocal_loss(a, q, 0.6, 1.5, iou_weighted), w, reduction
        ),
        x,
    )


def test_vfl_negatives_are_sigmoid_focal_negatives_with_alpha_swapped():
    # On q = 0: alpha p^gamma BCE(x, 0) = sigmoid focal with y = 0 and alpha_focal = 1 - alpha.
    x = torch.randn(20, dtype=F64, generator=_gen(7)) * 4
    zero = torch.zeros(20, dtype=F64)
    torch.testing.assert_close(
        losskit.varifocal_loss(x, zero, alpha=0.75, gamma=2.0, reduction="none"),
        losskit.sigmoid_focal_loss(x, zero, alpha=0.25, gamma=2.0, reduction="none"),
    )


def test_vfl_is_finite_for_gamma_below_1_at_saturated_logits():
    x = torch.tensor([-80.0, -30.0, 0.0, 40.0], dtype=torch.float32, requires_grad=True)
    out = losskit.varifocal_loss(x, torch.zeros(4), gamma=0.5, reduction="sum")
    (g,) = torch.autograd.grad(out, x)
    assert torch.isfinite(out) and torch.isfinite(g).all()


# ---------------------------------------------------------------- balanced L1


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("alpha", "gamma", "beta"), [(0.5, 1.5, 1.0), (1.0, 2.0, 0.5)])
def test_balanced_l1_matches_mmdetection(alpha, gamma, beta, reduction):
    g = _gen(8)
    x = torch.randn(8, 4, generator=g, dtype=F64) * 1.5
    t = torch.randn(8, 4, generator=g, dtype=F64)
    w = torch.rand(8, 1, generator=g, dtype=F64)
    _compare(
        lambda a: losskit.balanced_l1_loss(
            a, t, w, alpha=alpha, gamma=gamma, beta=beta, reduction=reduction
        ),
        lambda a: mmdet_weight_reduce_loss(
            mmdet_balanced_l1_loss(a, t, beta, alpha, gamma), w, reduction
        ),
        x,
    )


def test_balanced_l1_paper_properties():
    # Continuous at d = beta; gradient alpha ln(b d + 1) inside and gamma outside, which meet at
    # d = 1 for beta = 1 (the paper's design: b = e^{gamma / alpha} - 1).
    alpha, gamma = 0.5, 1.5
    b = math.exp(gamma / alpha) - 1
    d = torch.tensor([0.0, 0.25, 1.0 - 1e-9, 1.0, 2.0], dtype=F64, requires_grad=True)
    loss = losskit.balanced_l1_loss(d, torch.zeros(5, dtype=F64), reduction="none")
    assert loss[2].item() == pytest.approx(loss[3].item(), abs=1e-8)
    (g,) = torch.autograd.grad(loss.sum(), d)
    expected = [0.0, alpha * math.log(b * 0.25 + 1), gamma, gamma, gamma]
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-7, atol=1e-12)


def test_balanced_l1_target_gradient_is_minus_the_input_gradient():
    x = torch.randn(5, 4, dtype=F64, generator=_gen(9), requires_grad=True)
    t = torch.randn(5, 4, dtype=F64, generator=_gen(10), requires_grad=True)
    gx, gt = torch.autograd.grad(losskit.balanced_l1_loss(x, t), [x, t])
    torch.testing.assert_close(gt, -gx)


# ---------------------------------------------------------------- avg_factor, empty, Modules


def _calls(g: torch.Generator):
    x = torch.randn(6, 5, generator=g, dtype=F64)
    labels = torch.randint(0, 6, (6,), generator=g)
    scores = torch.rand(6, generator=g, dtype=F64)
    q = torch.rand(6, 5, generator=g, dtype=F64) * (torch.rand(6, 5, generator=g) < 0.3)
    dist = torch.rand(6, generator=g, dtype=F64) * 4
    deltas = torch.randn(6, 5, generator=g, dtype=F64)
    return {
        "quality_focal_loss": (x, (labels, scores)),
        "distribution_focal_loss": (x, dist),
        "varifocal_loss": (x, q),
        "balanced_l1_loss": (x, deltas),
    }


@pytest.mark.parametrize("name", ["quality_focal_loss", "distribution_focal_loss",
                                  "varifocal_loss", "balanced_l1_loss"])  # fmt: skip
def test_avg_factor_divides_the_sum_and_refuses_sum(name):
    x, t = _calls(_gen(11))[name]
    fn, ref = getattr(losskit, name), getattr(R, name)
    total = fn(x, t, reduction="sum")
    for avg in (3.0, torch.tensor(3.0, dtype=F64), torch.tensor(3)):
        got = fn(x, t, None, avg)
        torch.testing.assert_close(got, total / 3.0)
    args = (x.numpy(), t if isinstance(t, tuple) else t.numpy())
    np.testing.assert_allclose(fn(x, t, None, 7.5).item(), ref(*args, None, 7.5), rtol=1e-12)
    # mmdetection adds finfo(float32).eps to avg_factor: a 1.2e-7 relative difference at 1.
    with pytest.raises(ValueError, match=r'avg_factor can not be used with reduction="sum"'):
        fn(x, t, None, 3.0, reduction="sum")
    with pytest.raises(ValueError, match=r"avg_factor must be in \(0, inf\), got -1"):
        fn(x, t, None, -1)


@pytest.mark.parametrize("name", ["quality_focal_loss", "distribution_focal_loss",
                                  "varifocal_loss", "balanced_l1_loss"])  # fmt: skip
def test_empty_input_mean_is_zero_with_a_zero_gradient(name):
    x, t = _calls(_gen(12))[name]
    x0 = x[:0].clone().requires_grad_(True)
    t0 = tuple(v[:0] for v in t) if isinstance(t, tuple) else t[:0]
    fn = getattr(losskit, name)
    mean = fn(x0, t0)
    assert mean.item() == 0.0 and fn(x0, t0, reduction="sum").item() == 0.0
    (g,) = torch.autograd.grad(mean, x0)
    assert g.shape == x0.shape


def test_modules_take_weight_and_avg_factor_in_forward_and_check_in_init():
    g = _gen(13)
    calls = _calls(g)
    w = torch.rand(6, 1, generator=g, dtype=F64)
    modules = {
        "quality_focal_loss": (losskit.nn.QualityFocalLoss(beta=1.5), {"beta": 1.5}),
        "distribution_focal_loss": (losskit.nn.DistributionFocalLoss(), {}),
        "varifocal_loss": (
            losskit.nn.VarifocalLoss(alpha=0.5, iou_weighted=False),
            {"alpha": 0.5, "iou_weighted": False},
        ),
        "balanced_l1_loss": (losskit.nn.BalancedL1Loss(beta=0.5), {"beta": 0.5}),
    }
    for name, (module, kwargs) in modules.items():
        x, t = calls[name]
        weight = w[:, 0] if name in ("quality_focal_loss", "distribution_focal_loss") else w
        got = module(x, t, weight, 4.0)
        want = getattr(losskit, name)(x, t, weight, 4.0, **kwargs)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert "beta=1.5" in repr(modules["quality_focal_loss"][0])
    assert "iou_weighted=False" in repr(modules["varifocal_loss"][0])
    with pytest.raises(ValueError, match=r"Invalid reduction: 'avg'"):
        losskit.nn.VarifocalLoss(reduction="avg")


def test_flat_and_namespaced_exports():
    for name in ("quality_focal_loss", "distribution_focal_loss", "varifocal_loss",
                 "balanced_l1_loss"):  # fmt: skip
        assert getattr(losskit, name) is getattr(losskit.detection, name)
        assert getattr(losskit, name).backends.names == ("formula",)


def test_detection_losses_compile_whole():
    # One compiled function for the four losses (a compile costs seconds, the CI budget is small).
    calls = _calls(_gen(14))

    def everything(x: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(())
        for name, (_, t) in calls.items():
            total = total + getattr(losskit, name)(x, t)
        total = total + losskit.quality_focal_loss(x, calls["varifocal_loss"][1], avg_factor=2.0)
        return total

    torch._dynamo.reset()
    compiled = torch.compile(everything, fullgraph=True, backend="aot_eager")
    x = calls["varifocal_loss"][0]
    a, b = _leaf(x), _leaf(x)
    got, want = compiled(a), everything(b)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, a)[0], torch.autograd.grad(want, b)[0])
