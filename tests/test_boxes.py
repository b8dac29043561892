"""Box regression losses: torchvision's formulas, degenerate boxes, closed forms, detached gradients.

torchvision is not installed here, so its published formulas (torchvision/ops/giou_loss.py,
diou_loss.py, ciou_loss.py, _utils.py, boxes.py) are written out below as the oracle; losskit must
match them on valid boxes, values and gradients.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import losskit
from losskit import boxes as B
from losskit import reference as R
from losskit.specs.boxes import jittered, random_boxes

F64 = torch.float64
LOSSES = [
    "iou_loss",
    "giou_loss",
    "diou_loss",
    "ciou_loss",
    "eiou_loss",
    "focal_eiou_loss",
    "alpha_iou_loss",
    "siou_loss",
    "wiou_loss",
]
# Every option that changes the formula or its gradient.
VARIANTS = [(name, {}) for name in LOSSES] + [
    ("ciou_loss", {"detach_alpha": False}),
    ("wiou_loss", {"detach_enclosing": False}),
    ("focal_eiou_loss", {"gamma": 0.0}),
    ("focal_eiou_loss", {"gamma": 2.0}),
    ("alpha_iou_loss", {"alpha": 0.5}),
    ("siou_loss", {"theta": 0.5}),
]


# ---------------------------------------------------------------- torchvision's formulas


def tv_inter_union(b1, b2):
    x1, y1, x2, y2 = b1.unbind(-1)
    x1g, y1g, x2g, y2g = b2.unbind(-1)
    xk1, yk1 = torch.max(x1, x1g), torch.max(y1, y1g)
    xk2, yk2 = torch.min(x2, x2g), torch.min(y2, y2g)
    mask = (yk2 > yk1) & (xk2 > xk1)
    inter = torch.where(mask, (xk2 - xk1) * (yk2 - yk1), torch.zeros_like(x1))
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    return inter, union


def tv_enclosing(b1, b2):
    x1, y1, x2, y2 = b1.unbind(-1)
    x1g, y1g, x2g, y2g = b2.unbind(-1)
    return torch.min(x1, x1g), torch.min(y1, y1g), torch.max(x2, x2g), torch.max(y2, y2g)


def tv_giou_loss(b1, b2, eps=1e-7):
    inter, union = tv_inter_union(b1, b2)
    iou = inter / (union + eps)
    xc1, yc1, xc2, yc2 = tv_enclosing(b1, b2)
    area_c = (xc2 - xc1) * (yc2 - yc1)
    return 1 - (iou - (area_c - union) / (area_c + eps))


def tv_diou_iou_loss(b1, b2, eps=1e-7):
    inter, union = tv_inter_union(b1, b2)
    iou = inter / (union + eps)
    xc1, yc1, xc2, yc2 = tv_enclosing(b1, b2)
    diag = (xc2 - xc1) ** 2 + (yc2 - yc1) ** 2 + eps
    x1, y1, x2, y2 = b1.unbind(-1)
    x1g, y1g, x2g, y2g = b2.unbind(-1)
    dist = ((x2 + x1) / 2 - (x1g + x2g) / 2) ** 2 + ((y2 + y1) / 2 - (y1g + y2g) / 2) ** 2
    return 1 - iou + dist / diag, iou


def tv_ciou_loss(b1, b2, eps=1e-7):
    diou, iou = tv_diou_iou_loss(b1, b2, eps)
    x1, y1, x2, y2 = b1.unbind(-1)
    x1g, y1g, x2g, y2g = b2.unbind(-1)
    w, h, wg, hg = x2 - x1, y2 - y1, x2g - x1g, y2g - y1g
    v = (4 / torch.pi**2) * (torch.atan(wg / hg) - torch.atan(w / h)) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return diou + alpha * v


def tv_box_iou(b1, b2):
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    lt = torch.max(b1[:, None, :2], b2[:, :2])
    rb = torch.min(b1[:, None, 2:], b2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2 - inter)


TV = {
    "giou_loss": tv_giou_loss,
    "diou_loss": lambda a, b: tv_diou_iou_loss(a, b)[0],
    "ciou_loss": tv_ciou_loss,
}


def _pairs(seed: int, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Valid boxes of side >= 0.5: half near their targets, half independent (many disjoint)."""
    g = torch.Generator().manual_seed(seed)
    p = random_boxes(g, n)
    t = torch.cat([jittered(g, p[: n // 2], 0.2), random_boxes(g, n - n // 2)])
    return p, t


@pytest.mark.parametrize("name", sorted(TV))
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_torchvision_values_and_gradients(name, seed):
    p, t = _pairs(seed)
    ours_p, ours_t = p.clone().requires_grad_(), t.clone().requires_grad_()
    tv_p, tv_t = p.clone().requires_grad_(), t.clone().requires_grad_()
    ours = getattr(B, name)(ours_p, ours_t, reduction="none")
    theirs = TV[name](tv_p, tv_t)
    # Identical formulas on valid boxes (CIoU's angle is the paper's atan(w / h), as theirs).
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    up = torch.randn(ours.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    g_ours = torch.autograd.grad(ours, [ours_p, ours_t], up)
    g_theirs = torch.autograd.grad(theirs, [tv_p, tv_t], up)
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_box_iou_matches_torchvision_and_a_loop():
    g = torch.Generator().manual_seed(3)
    b1, b2 = random_boxes(g, 5), random_boxes(g, 7)
    out = B.box_iou(b1, b2)
    assert out.shape == (5, 7)
    # Exact by default: torchvision's inter / union, to the last bit of its formula.
    torch.testing.assert_close(out, tv_box_iou(b1, b2), rtol=1e-14, atol=0)
    np.testing.assert_allclose(out.numpy(), R.box_iou_matrix(b1.numpy(), b2.numpy()), rtol=1e-12)
    # eps stays an option: the diagonal of box_iou(b, b, eps) is A / (A + eps).
    area = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    torch.testing.assert_close(B.box_iou(b1, b1, eps=1e-7).diagonal(), area / (area + 1e-7))
    assert B.box_iou is B.box_iou_matrix


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_box_iou_of_small_identical_boxes_is_one(dtype):
    # The issue: with eps=1e-7 in the denominator two identical 1e-3 boxes had IoU 0.909.
    small = torch.tensor([[0.5, 0.5, 0.501, 0.501], [0.2, 0.3, 0.2004, 0.3001]], dtype=dtype)
    iou = B.box_iou(small, small)
    assert torch.equal(iou.diagonal(), torch.ones(2, dtype=dtype))
    half = torch.tensor([[0.0, 0.0, 1e-3, 1e-3]], dtype=dtype)
    other = torch.tensor([[0.0, 0.0, 5e-4, 1e-3]], dtype=dtype)
    assert B.box_iou(half, other).item() == pytest.approx(0.5, rel=1e-6)
    assert B.box_iou(half, half, eps=1e-7).item() == pytest.approx(1e-6 / (1e-6 + 1e-7))


def test_box_iou_zero_area_pairs_are_zero_where_torchvision_is_nan():
    points = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 0.0]], dtype=F64)
    assert torch.isnan(tv_box_iou(points, points)).all()  # torchvision's 0 / 0
    leaf = points.clone().requires_grad_(True)
    iou = B.box_iou(leaf, points)
    assert torch.equal(iou, torch.zeros(2, 2, dtype=F64))
    (g,) = torch.autograd.grad(iou.sum(), leaf)
    assert torch.isfinite(g).all()
    assert (B.box_iou(points, points, eps=1e-7) == 0).all()  # 0 / eps


# ---------------------------------------------------------------- degenerate boxes

DEGENERATE = {
    "identical boxes": ([0.0, 0.0, 2.0, 3.0], [0.0, 0.0, 2.0, 3.0]),
    "identical points": ([1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]),
    "two points": ([1.0, 1.0, 1.0, 1.0], [3.0, 2.0, 3.0, 2.0]),
    "point inside box": ([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]),
    "box vs point": ([0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 5.0, 5.0]),
    "horizontal line vs box": ([0.0, 1.0, 3.0, 1.0], [0.0, 0.0, 2.0, 2.0]),
    "vertical lines": ([1.0, 0.0, 1.0, 2.0], [1.5, 0.5, 1.5, 4.0]),
    "identical lines": ([0.0, 1.0, 3.0, 1.0], [0.0, 1.0, 3.0, 1.0]),
    "same centre, line vs box": ([0.0, 1.0, 2.0, 1.0], [0.0, 0.0, 2.0, 2.0]),
    "touching edges": ([0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 2.0, 1.0]),
    "nested": ([0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]),
    "far apart": ([0.0, 0.0, 1.0, 1.0], [100.0, 50.0, 101.0, 52.0]),
}


def _degenerate(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.tensor([v[0] for v in DEGENERATE.values()], dtype=dtype)
    t = torch.tensor([v[1] for v in DEGENERATE.values()], dtype=dtype)
    return p, t


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=lambda v: str(v))
def test_degenerate_boxes_give_finite_values_and_gradients(name, kwargs, dtype):
    p, t = _degenerate(dtype)
    p.requires_grad_(True)
    t.requires_grad_(True)
    loss = getattr(B, name)(p, t, reduction="none", **kwargs)
    assert loss.dtype == dtype
    assert torch.isfinite(loss).all(), dict(zip(DEGENERATE, loss.tolist(), strict=True))
    # At exactly degenerate configurations the slope of a guard is O(1/eps) (1.5e7 for GIoU on
    # identical lines, 1.3e6 for CIoU on a point box): finite in float32/64, beyond the float16
    # range. Half-precision leaves therefore need a larger eps (as documented).
    if dtype in (torch.float16, torch.bfloat16):
        loss = getattr(B, name)(p, t, reduction="none", eps=1e-3, **kwargs)
        assert torch.isfinite(loss).all()
    gp, gt = torch.autograd.grad(loss.sum(), [p, t])
    assert torch.isfinite(gp).all() and torch.isfinite(gt).all()
    if dtype == torch.float64:  # the reference agrees on degenerate boxes too
        expected = getattr(R, name)(
            p.detach().numpy(), t.detach().numpy(), reduction="none", **kwargs
        )
        np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-9, atol=1e-12)


def test_torchvision_ciou_is_nan_on_degenerate_boxes_where_ours_is_finite():
    t = torch.tensor([[0.0, 0.0, 2.0, 2.0]], dtype=F64)
    line = torch.tensor([[0.0, 1.0, 3.0, 1.0]], dtype=F64, requires_grad=True)
    (g_tv,) = torch.autograd.grad(tv_ciou_loss(line, t).sum(), line)
    assert torch.isnan(g_tv).any()  # atan(w / 0): a finite value, a NaN gradient
    point = torch.tensor([[1.0, 1.0, 1.0, 1.0]], dtype=F64, requires_grad=True)
    assert torch.isnan(tv_ciou_loss(point, t)).all()  # atan(0 / 0)
    for box in (line, point):
        ours = B.ciou_loss(box, t)
        (g,) = torch.autograd.grad(ours, box)
        assert torch.isfinite(ours) and torch.isfinite(g).all()


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=lambda v: str(v))
def test_identical_boxes_have_zero_loss_and_points_have_iou_zero(name, kwargs):
    box = torch.tensor([[1.0, 2.0, 4.0, 3.0]], dtype=F64)
    same = getattr(B, name)(box, box.clone(), **kwargs).item()
    assert same == pytest.approx(0.0, abs=1e-6)  # 1 - A / (A + eps)
    point = torch.tensor([[1.0, 1.0, 1.0, 1.0]], dtype=F64)
    at_point = getattr(B, name)(point, point.clone(), **kwargs).item()
    # IoU of two identical points is 0 / eps = 0; every penalty term is 0 there.
    expected = {"focal_eiou_loss": 1.0 if kwargs.get("gamma") == 0.0 else 0.0}.get(name, 1.0)
    assert at_point == pytest.approx(expected)


# ---------------------------------------------------------------- closed forms


def test_disjoint_unit_boxes_closed_forms():
    # [0,0,1,1] vs [2,0,3,1]: IoU 0, union 2, enclosing 3 x 1, centres 2 apart horizontally.
    p = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=F64)
    t = torch.tensor([2.0, 0.0, 3.0, 1.0], dtype=F64)
    eps = 1e-7
    centre = 4.0 / (10.0 + eps)
    assert B.iou_loss(p, t).item() == 1.0
    assert B.giou_loss(p, t).item() == pytest.approx(1.0 + 1.0 / 3.0)
    assert B.diou_loss(p, t).item() == pytest.approx(1.0 + centre)
    assert B.ciou_loss(p, t).item() == pytest.approx(1.0 + centre)  # same aspect: v = 0
    assert B.eiou_loss(p, t).item() == pytest.approx(1.0 + centre)  # same sides
    assert B.focal_eiou_loss(p, t).item() == 0.0  # IoU^gamma = 0
    assert B.alpha_iou_loss(p, t).item() == 1.0
    # SIoU: horizontal offset -> angle cost 0, gamma 2, rho_x = 4/9; equal shapes.
    assert B.siou_loss(p, t).item() == pytest.approx(1.0 + 0.5 * (1.0 - math.exp(-8.0 / 9.0)))
    assert B.wiou_loss(p, t).item() == pytest.approx(math.exp(centre))


def test_siou_angle_cost_at_45_degrees():
    # Offset (1, 1): alpha = 45 degrees, angle cost 1, gamma 1; equal shapes (no shape cost).
    p = torch.tensor([0.0, 0.0, 2.0, 2.0], dtype=F64)
    t = p + 1.0
    rho = 1.0 / (3.0**2 + 1e-7)  # dx^2 / (C_w^2 + eps), and the same for y
    iou = 1.0 / (7.0 + 1e-7)  # intersection 1, union 4 + 4 - 1
    expected = 1.0 - iou + 0.5 * 2 * (1.0 - math.exp(-rho))
    assert B.siou_loss(p, t).item() == pytest.approx(expected, rel=1e-12)


def test_relations_between_losses():
    p, t = _pairs(5)
    torch.testing.assert_close(B.focal_eiou_loss(p, t, gamma=0.0), B.eiou_loss(p, t))
    torch.testing.assert_close(B.alpha_iou_loss(p, t, alpha=1.0), B.iou_loss(p, t))
    w, h = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    wg, hg = t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]
    cw = torch.max(p[:, 2], t[:, 2]) - torch.min(p[:, 0], t[:, 0])
    ch = torch.max(p[:, 3], t[:, 3]) - torch.min(p[:, 1], t[:, 1])
    sides = (w - wg) ** 2 / (cw**2 + 1e-7) + (h - hg) ** 2 / (ch**2 + 1e-7)
    torch.testing.assert_close(
        B.eiou_loss(p, t, reduction="none") - B.diou_loss(p, t, reduction="none"), sides
    )
    iou = 1.0 - B.iou_loss(p, t, reduction="none")
    torch.testing.assert_close(
        B.focal_eiou_loss(p, t, gamma=0.5, reduction="none"),
        iou**0.5 * B.eiou_loss(p, t, reduction="none"),
    )


# ---------------------------------------------------------------- detached terms


def test_detach_options_change_gradients_not_values():
    p, t = _pairs(2)
    for name, flag in (("ciou_loss", "detach_alpha"), ("wiou_loss", "detach_enclosing")):
        fn = getattr(B, name)
        torch.testing.assert_close(fn(p, t, **{flag: True}), fn(p, t, **{flag: False}))
        grads = []
        for value in (True, False):
            x = p.clone().requires_grad_()
            (g,) = torch.autograd.grad(fn(x, t, **{flag: value}), x)
            grads.append(g)
        assert not torch.allclose(grads[0], grads[1])


def test_wiou_detached_gradient_against_finite_differences_with_fixed_enclosing_box():
    # Oracle: exp(rho^2 / D0) * (1 - IoU) with D0 the enclosing diagonal at the base point, held
    # fixed, differentiated numerically with the NumPy IoU of the reference.
    p, t = _pairs(4, n=6)
    pn, tn = p.numpy(), t.numpy()

    def centre_sq(a: np.ndarray) -> np.ndarray:
        return ((a[:, 0] + a[:, 2]) / 2 - (tn[:, 0] + tn[:, 2]) / 2) ** 2 + (
            (a[:, 1] + a[:, 3]) / 2 - (tn[:, 1] + tn[:, 3]) / 2
        ) ** 2

    cw = np.maximum(pn[:, 2], tn[:, 2]) - np.minimum(pn[:, 0], tn[:, 0])
    ch = np.maximum(pn[:, 3], tn[:, 3]) - np.minimum(pn[:, 1], tn[:, 1])
    d0 = cw**2 + ch**2 + 1e-7

    def fixed(a: np.ndarray) -> float:
        one_minus_iou = R.iou_loss(a, tn, reduction="none")
        return float(np.sum(np.exp(centre_sq(a) / d0) * one_minus_iou))

    numeric = np.zeros_like(pn)
    h = 1e-6
    for idx in np.ndindex(pn.shape):
        up, down = pn.copy(), pn.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (fixed(up) - fixed(down)) / (2 * h)
    x = p.clone().requires_grad_()
    (g,) = torch.autograd.grad(B.wiou_loss(x, t, reduction="sum"), x)
    np.testing.assert_allclose(g.numpy(), numeric, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- reductions, checks


@pytest.mark.parametrize("name", LOSSES)
def test_empty_batch_mean_is_zero_with_zero_gradient(name):
    p = torch.zeros(0, 4, dtype=F64, requires_grad=True)
    fn = getattr(B, name)
    assert fn(p, p.detach(), reduction="none").shape == (0,)
    assert fn(p, p.detach(), reduction="sum").item() == 0.0
    mean = fn(p, p.detach())
    assert mean.item() == 0.0
    (g,) = torch.autograd.grad(mean, p)
    assert g.shape == (0, 4)


def test_invalid_boxes_raise_unless_value_checks_are_off():
    p = torch.tensor([[2.0, 0.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match=r"pred has a box with x2 < x1"):
        B.giou_loss(p, p)
    with pytest.raises(ValueError, match=r"boxes2 has a box"):
        B.box_iou(p.abs().sort(-1).values, p)
    with pytest.raises(ValueError, match=r"pred has a box"):
        B.iou_loss(torch.full((1, 4), float("nan")), p.sort(-1).values)
    losskit.set_checks("shapes")
    try:
        B.giou_loss(p, p)  # no value read
    finally:
        losskit.set_checks("all")


def test_box_iou_shape_errors():
    with pytest.raises(ValueError, match=r"boxes1 must be 2-D \(N, 4\)"):
        B.box_iou(torch.zeros(2, 3, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"boxes2 must have shape \(\.\.\., 4\)"):
        B.box_iou(torch.zeros(2, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"eps must be in \[0, inf\)"):
        B.box_iou(torch.zeros(2, 4), torch.zeros(3, 4), eps=-1.0)


def test_boxes_namespace():
    assert "siou_loss" in B.__all__ and "box_iou" in B.__all__
    assert not hasattr(losskit, "siou_loss")  # a submodule, not star-imported
    assert losskit.nn.WIoULoss()(*_pairs(0)).item() == pytest.approx(B.wiou_loss(*_pairs(0)).item())


# ---------------------------------------------------------------- CIoU's aspect angle


def test_ciou_angle_is_the_papers_atan_w_over_h_on_small_boxes():
    # Normalised coordinates: boxes of side ~1e-3, where an eps under h shifted the angle by
    # eps / h ~ 1e-4 relative. Oracle: torchvision's formula (atan(w / h), no guard).
    g = torch.Generator().manual_seed(11)
    p = random_boxes(g, 12, scale=1e-2, min_size=5e-4)
    t = jittered(g, p, 0.4)
    ours = B.ciou_loss(p, t, reduction="none")
    torch.testing.assert_close(ours, tv_ciou_loss(p, t), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        ours.numpy(), R.ciou_loss(p.numpy(), t.numpy(), reduction="none"), rtol=1e-12
    )


def test_ciou_guards_only_the_degenerate_angle():
    # A horizontal line: torchvision's atan(w / 0) = pi/2 is a finite value with a NaN gradient;
    # ours is the same value with the gradient of atan2 (d/dh = -1/w, d/dw = 0).
    t = torch.tensor([[0.0, 0.0, 2.0, 2.0]], dtype=F64)
    line = torch.tensor([[0.0, 1.0, 3.0, 1.0]], dtype=F64)
    assert B.ciou_loss(line, t).item() == pytest.approx(tv_ciou_loss(line, t).item(), rel=1e-14)
    w, h = torch.tensor(3.0, dtype=F64, requires_grad=True), torch.tensor(0.0, dtype=F64)
    h.requires_grad_(True)
    angle = B._aspect_angle(w, h)
    assert angle.item() == pytest.approx(math.pi / 2)
    gw, gh = torch.autograd.grad(angle, [w, h])
    assert gw.item() == 0.0 and gh.item() == pytest.approx(-1.0 / 3.0)
    # A point: angle 0 with a zero gradient (atan2(0, 0) has none).
    z = torch.zeros(2, dtype=F64, requires_grad=True)
    angle = B._aspect_angle(z[0], z[1])
    assert angle.item() == 0.0
    assert torch.equal(torch.autograd.grad(angle, z)[0], torch.zeros(2, dtype=F64))


# ---------------------------------------------------------------- pairwise matrices


def tv_generalized_box_iou(b1, b2):
    inter, union = tv_inter_union(b1[:, None, :], b2[None, :, :])
    iou = inter / union
    lti = torch.min(b1[:, None, :2], b2[:, :2])
    rbi = torch.max(b1[:, None, 2:], b2[:, 2:])
    whi = (rbi - lti).clamp(min=0)
    areai = whi[:, :, 0] * whi[:, :, 1]
    return iou - (areai - union) / areai


def tv_box_diou_iou(b1, b2, eps=1e-7):
    iou = tv_box_iou(b1, b2)
    lti = torch.min(b1[:, None, :2], b2[:, :2])
    rbi = torch.max(b1[:, None, 2:], b2[:, 2:])
    whi = (rbi - lti).clamp(min=0)
    diag = whi[:, :, 0] ** 2 + whi[:, :, 1] ** 2 + eps
    xp, yp = (b1[:, 0] + b1[:, 2]) / 2, (b1[:, 1] + b1[:, 3]) / 2
    xg, yg = (b2[:, 0] + b2[:, 2]) / 2, (b2[:, 1] + b2[:, 3]) / 2
    dist = (xp[:, None] - xg[None, :]) ** 2 + (yp[:, None] - yg[None, :]) ** 2
    return iou - dist / diag, iou


def tv_complete_box_iou(b1, b2, eps=1e-7):
    diou, iou = tv_box_diou_iou(b1, b2, eps)
    w_pred, h_pred = b1[:, None, 2] - b1[:, None, 0], b1[:, None, 3] - b1[:, None, 1]
    w_gt, h_gt = b2[:, 2] - b2[:, 0], b2[:, 3] - b2[:, 1]
    v = (4 / torch.pi**2) * torch.pow(torch.atan(w_pred / h_pred) - torch.atan(w_gt / h_gt), 2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return diou - alpha * v


MATRICES = {
    "box_iou_matrix": tv_box_iou,
    "giou_matrix": tv_generalized_box_iou,
    "diou_matrix": lambda a, b: tv_box_diou_iou(a, b)[0],
    "ciou_matrix": tv_complete_box_iou,
}


def _box_sets(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    b1 = random_boxes(g, 5)
    b2 = torch.cat([jittered(g, b1[:3], 0.3), random_boxes(g, 4)])  # overlapping and disjoint
    return b1, b2


@pytest.mark.parametrize("name", list(MATRICES))
def test_matrices_match_torchvision_values_and_gradients(name):
    b1, b2 = _box_sets(0)
    a1, a2 = b1.clone().requires_grad_(), b2.clone().requires_grad_()
    t1, t2 = b1.clone().requires_grad_(), b2.clone().requires_grad_()
    ours = getattr(B, name)(a1, a2)
    theirs = MATRICES[name](t1, t2)
    assert ours.shape == (5, 7)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
    up = torch.randn(5, 7, generator=torch.Generator().manual_seed(1), dtype=F64)
    for a, b in zip(
        torch.autograd.grad(ours, [a1, a2], up),
        torch.autograd.grad(theirs, [t1, t2], up),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


# Degenerate sets: points, lines, identical and collinear boxes (where torchvision has 0 / 0).
DEGENERATE_SET = torch.tensor(
    [
        [1.0, 1.0, 1.0, 1.0],
        [1.0, 1.0, 1.0, 1.0],
        [0.0, 1.0, 3.0, 1.0],
        [2.0, 1.0, 5.0, 1.0],
        [1.0, 0.0, 1.0, 2.0],
        [0.0, 0.0, 2.0, 3.0],
        [0.5, 0.5, 1.0, 1.0],
    ],
    dtype=F64,
)


@pytest.mark.parametrize("name", list(MATRICES))
@pytest.mark.parametrize("eps", [None, 0.0, 1e-3])
def test_matrices_equal_a_brute_force_loop_also_on_degenerate_boxes(name, eps):
    b1, b2 = _box_sets(2)
    kwargs = {} if eps is None else {"eps": eps}
    for x, y in ((b1, b2), (DEGENERATE_SET, DEGENERATE_SET), (DEGENERATE_SET, b2)):
        leaf = x.clone().requires_grad_(True)
        out = getattr(B, name)(leaf, y, **kwargs)
        expected = getattr(R, name)(x.numpy(), y.numpy(), **kwargs)
        np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-14)
        (g,) = torch.autograd.grad(out.sum(), leaf)
        assert torch.isfinite(g).all()


def test_matrix_zero_over_zero_cases_are_zero():
    pts = DEGENERATE_SET[:2]  # two identical points: union 0, enclosing area 0, diagonal 0
    for fn in (B.box_iou_matrix, B.giou_matrix):
        assert torch.equal(fn(pts, pts), torch.zeros(2, 2, dtype=F64))
    assert torch.equal(B.diou_matrix(pts, pts, eps=0.0), torch.zeros(2, 2, dtype=F64))
    assert torch.equal(B.ciou_matrix(pts, pts, eps=0.0), torch.zeros(2, 2, dtype=F64))
    # Two collinear horizontal lines: enclosing area 0 -> GIoU penalty 0 (torchvision: NaN).
    lines = DEGENERATE_SET[2:4]
    assert torch.isnan(tv_generalized_box_iou(lines, lines)).any()
    assert torch.equal(B.giou_matrix(lines, lines), torch.zeros(2, 2, dtype=F64))


def test_matrix_closed_forms():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=F64)
    b = torch.tensor([[2.0, 0.0, 3.0, 1.0]], dtype=F64)
    assert B.giou_matrix(a, b).item() == pytest.approx(-1.0 / 3.0, rel=1e-15)
    assert B.diou_matrix(a, b, eps=0.0).item() == pytest.approx(-4.0 / 10.0, rel=1e-15)
    assert B.ciou_matrix(a, b, eps=0.0).item() == pytest.approx(-0.4, rel=1e-15)  # same aspect
    tall = torch.tensor([[0.0, 0.0, 1.0, 2.0]], dtype=F64)
    wide = torch.tensor([[0.0, 0.0, 2.0, 1.0]], dtype=F64)
    iou = 1.0 / 3.0
    v = 4.0 / math.pi**2 * (math.atan(0.5) - math.atan(2.0)) ** 2
    rho = 0.5**2 + 0.5**2
    expected = iou - rho / 8.0 - v / (1.0 - iou + v) * v
    assert B.ciou_matrix(tall, wide, eps=0.0).item() == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_matrices_compute_half_inputs_in_float32(dtype):
    b1, b2 = _box_sets(4)
    lo1, lo2 = b1.to(dtype), b2.to(dtype)
    for name in MATRICES:
        out = getattr(B, name)(lo1, lo2)
        assert out.dtype == dtype
        expected = getattr(R, name)(lo1.double().numpy(), lo2.double().numpy())
        tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
        np.testing.assert_allclose(out.double().numpy(), expected, rtol=tol, atol=tol)


def test_matrices_detach_alpha_changes_gradients_only():
    b1, b2 = _box_sets(5)
    vals, grads = [], []
    for detach in (True, False):
        x = b1.clone().requires_grad_()
        out = B.ciou_matrix(x, b2, detach_alpha=detach)
        vals.append(out.detach())
        grads.append(torch.autograd.grad(out.sum(), x)[0])
    torch.testing.assert_close(vals[0], vals[1], rtol=0, atol=0)
    assert not torch.allclose(grads[0], grads[1])


def test_matrices_bad_inputs():
    good = torch.zeros(2, 4)
    for name in MATRICES:
        fn = getattr(B, name)
        with pytest.raises(ValueError, match=r"boxes1 must be 2-D \(N, 4\), got shape \(2, 3, 4\)"):
            fn(torch.zeros(2, 3, 4), good)
        with pytest.raises(ValueError, match=r"boxes2 must have shape \(\.\.\., 4\)"):
            fn(good, torch.zeros(3, 5))
        with pytest.raises(TypeError, match=r"boxes1 and boxes2 must have the same dtype"):
            fn(good, good.double())
        with pytest.raises(TypeError, match=r"boxes1 must be a floating-point tensor"):
            fn(good.long(), good)
        with pytest.raises(ValueError, match=r"eps must be in \[0, inf\)"):
            fn(good, good, eps=-1.0)
        with pytest.raises(ValueError, match=r"boxes2 has a box with x2 < x1"):
            fn(good, torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
    with pytest.raises(TypeError, match=r"detach_alpha must be a bool"):
        B.ciou_matrix(good, good, detach_alpha=None)
    assert B.giou_matrix(torch.zeros(0, 4), good).shape == (0, 2)


def test_matrices_compile_whole():
    # One compiled function for the four: a compile costs seconds, the CI budget is small. (The
    # losses, ciou_loss included, are compiled by the registry-wide compile test.)
    b1, b2 = _box_sets(6)

    def everything(x: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(())
        for name in MATRICES:
            total = total + (getattr(B, name)(x, b2) * torch.arange(7.0, dtype=F64)).sum()
        return total

    torch._dynamo.reset()
    compiled = torch.compile(everything, fullgraph=True, backend="aot_eager")
    a, b = b1.clone().requires_grad_(), b1.clone().requires_grad_()
    got, want = compiled(a), everything(b)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, a)[0], torch.autograd.grad(want, b)[0])
