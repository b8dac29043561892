"""The segmentation contract beyond the generic suite: ignored pixels have no effect, float16 at
512×512, whole-graph compilation, the generalised-Dice empty-class rule, signed distance maps,
and a small model that learns with ``dice_ce_loss``.

Oracles: the same call with the ignored pixels' logits changed (must be bit-for-bit equal), the
float64 computation of the same rounded inputs, eager mode, hand-computed weights, and the NumPy
brute-force distance map.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.autograd.forward_ad as fwAD

import losskit
from losskit import reference as R
from losskit import segmentation as S

F64 = torch.float64

# (functional, extra kwargs) for every loss taking index targets.
INDEX_LOSSES = [
    (S.dice_loss, {}),
    (S.dice_loss, {"squared_pred": True, "activation": "sigmoid"}),
    (S.jaccard_loss, {}),
    (S.tversky_loss, {"alpha": 0.3, "beta": 0.7}),
    (S.focal_tversky_loss, {}),
    (S.generalized_dice_loss, {}),
    (S.lovasz_softmax_loss, {}),
    (S.lovasz_softmax_loss, {"classes": "all"}),
    (S.lovasz_hinge_loss, {}),
    (S.dice_ce_loss, {}),
    (S.dice_ce_loss, {"activation": "sigmoid"}),
    (S.dice_focal_loss, {}),
    (S.dice_focal_loss, {"activation": "sigmoid", "alpha": 0.25}),
]
IDS = [f"{f.__name__}-{'-'.join(map(str, kw.values())) or 'defaults'}" for f, kw in INDEX_LOSSES]


@pytest.mark.parametrize(
    ("include_background", "batch_dice"), [(True, False), (False, True)], ids=["image", "batch"]
)
@pytest.mark.parametrize(("fn", "kwargs"), INDEX_LOSSES, ids=IDS)
def test_ignored_pixels_have_exactly_zero_effect_on_value_and_gradient(
    fn, kwargs, include_background, batch_dice
):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 5, generator=g, dtype=F64)
    target = torch.randint(3, (2, 6, 5), generator=g)
    ignored = torch.rand(2, 6, 5, generator=g) < 0.3
    target[ignored] = 255
    # The ignored pixels' logits: huge, of both signs, in every channel.
    x2 = torch.where(ignored.unsqueeze(1), 50.0 * torch.randn(x.shape, generator=g, dtype=F64), x)
    call = {
        "ignore_index": 255,
        "include_background": include_background,
        "batch_dice": batch_dice,
        **kwargs,
    }
    a, b = x.clone().requires_grad_(), x2.clone().requires_grad_()
    loss_a, loss_b = fn(a, target, **call), fn(b, target, **call)
    loss_a.backward()
    loss_b.backward()
    assert torch.equal(loss_a, loss_b)
    assert torch.equal(a.grad, b.grad)
    assert not a.grad[ignored.unsqueeze(1).expand_as(a)].any()
    assert a.grad[~ignored.unsqueeze(1).expand_as(a)].abs().sum() > 0


# The overlap losses' eager CPU path for index targets has a hand-written backward and jvp.
OVERLAP_LOSSES = [
    (S.dice_loss, {}),
    (S.dice_loss, {"squared_pred": True, "include_background": False}),
    (S.jaccard_loss, {"batch_dice": True}),
    (S.tversky_loss, {"alpha": 0.3, "beta": 0.7}),
    (S.generalized_dice_loss, {}),
]
OVERLAP_IDS = [f"{f.__name__}-{'-'.join(map(str, kw)) or 'defaults'}" for f, kw in OVERLAP_LOSSES]


# torch's forward-mode AD loads decompositions with torch.jit.script, which warns.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("ignore_index", [None, 1, 255])
@pytest.mark.parametrize(("fn", "kwargs"), OVERLAP_LOSSES, ids=OVERLAP_IDS)
def test_index_target_overlap_derivatives_match_finite_differences(fn, kwargs, ignore_index):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 2, 3, generator=g, dtype=F64, requires_grad=True)
    target = torch.randint(3, (2, 2, 3), generator=g)
    if ignore_index is not None:
        target[:, 0, :2] = ignore_index

    def loss(a):
        return fn(a, target, ignore_index=ignore_index, **kwargs)

    # Reverse mode, forward mode and the double backward (create_graph=True).
    assert torch.autograd.gradcheck(loss, (x,), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(loss, (x,))
    # Forward mode on an input that requires grad (the hand-written Function's jvp).
    tangent = torch.randn(x.shape, generator=g, dtype=F64)
    with fwAD.dual_level():
        jvp = fwAD.unpack_dual(loss(fwAD.make_dual(x, tangent))).tangent
    with torch.no_grad():
        fd = (loss(x + 1e-6 * tangent) - loss(x - 1e-6 * tangent)) / 2e-6
    torch.testing.assert_close(jvp, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    ("bad", "ignore_index"), [(3, None), (-1, None), (3, 255), (9, 255), (-2, 1)]
)
@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
def test_an_index_target_out_of_range_raises_index_error_naming_it(bad, ignore_index, grad):
    x = torch.randn(2, 3, 4, 4, requires_grad=grad)
    target = torch.randint(3, (2, 4, 4))
    target[1, 2, 3] = bad
    for fn in (S.dice_loss, S.jaccard_loss, S.tversky_loss, S.generalized_dice_loss):
        with pytest.raises(IndexError, match=rf"Target {bad} is out of bounds"):
            fn(x, target, ignore_index=ignore_index)


def test_ignored_pixels_with_non_finite_logits_leave_the_overlap_value_unchanged():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, 4, generator=g)
    target = torch.randint(3, (2, 4, 4), generator=g)
    target[0, :2] = 255
    bad = x.clone()
    bad[0, :, :2] = torch.tensor([float("inf"), float("nan"), -float("inf")]).view(3, 1, 1)
    for fn in (S.dice_loss, S.jaccard_loss, S.tversky_loss, S.generalized_dice_loss):
        for kwargs in ({}, {"squared_pred": True}) if fn is S.dice_loss else ({},):
            expected = fn(x, target, ignore_index=255, **kwargs)
            assert torch.equal(fn(bad, target, ignore_index=255, **kwargs), expected)


def test_float16_dice_at_512x512_is_finite_and_float32_accurate():
    g = torch.Generator().manual_seed(0)
    x16 = (3.0 * torch.randn(8, 4, 512, 512, generator=g)).half()
    target = torch.randint(4, (8, 512, 512), generator=g)
    # The case is real: a class's probability mass summed in float16 overflows (smp #463).
    assert torch.isinf(x16.softmax(1).sum((2, 3))).any()

    # A loss scale, as torch.amp.GradScaler's: the gradient of a mean over 8M pixels is ~1e-7, a
    # float16 subnormal, without it; 2**12 keeps the upstream 4096 and the gradients normal.
    scale = 2.0**12
    a = x16.clone().requires_grad_()
    loss16 = S.dice_loss(a, target)
    (loss16 * scale).backward()
    b = x16.double().requires_grad_()
    loss64 = S.dice_loss(b, target)
    (loss64 * scale).backward()

    assert loss16.dtype == torch.float16 and torch.isfinite(loss16)
    assert torch.isfinite(a.grad).all()
    # Only the final rounding to float16 remains: within one float16 ulp of the float64 value.
    ulp = torch.finfo(torch.float16).eps * abs(loss64.item())
    assert abs(loss16.item() - loss64.item()) <= ulp
    torch.testing.assert_close(a.grad.double(), b.grad, rtol=2e-3, atol=1e-6)


# Each loss with its contract options; one compiled function returns them all (one compile).
_COMPILED = [
    ("dice", lambda x, y, d: S.dice_loss(x, y, ignore_index=255, squared_pred=True)),
    ("jaccard", lambda x, y, d: S.jaccard_loss(x, y, ignore_index=255, batch_dice=True)),
    ("tversky", lambda x, y, d: S.tversky_loss(x, y, alpha=0.3, ignore_index=255)),
    ("focal_tversky", lambda x, y, d: S.focal_tversky_loss(x, y, ignore_index=255)),
    ("generalized", lambda x, y, d: S.generalized_dice_loss(x, y, ignore_index=255)),
    ("lovasz_softmax", lambda x, y, d: S.lovasz_softmax_loss(x, y, ignore_index=255)),
    ("lovasz_hinge", lambda x, y, d: S.lovasz_hinge_loss(x, y, ignore_index=255, batch_dice=True)),
    (
        "dice_ce",
        lambda x, y, d: S.dice_ce_loss(
            x, y, ignore_index=255, include_background=False, ce_include_background=False
        ),
    ),
    ("dice_focal", lambda x, y, d: S.dice_focal_loss(x, y, activation="sigmoid", ignore_index=255)),
    ("boundary", lambda x, y, d: S.boundary_loss(x, d, include_background=False)),
]


def test_every_segmentation_loss_compiles_whole_forward_and_backward():
    def all_losses(x, y, d):
        return tuple(fn(x, y, d) for _, fn in _COMPILED)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=g)
    y = torch.randint(3, (2, 8, 8), generator=g)
    y[:, 0, :3] = 255
    d = torch.randn(2, 3, 8, 8, generator=g)
    compiled = torch.compile(all_losses, fullgraph=True, backend="aot_eager")
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager, traced = all_losses(xe, y, d), compiled(xc, y, d)
    for (name, _), e, c in zip(_COMPILED, eager, traced, strict=True):
        torch.testing.assert_close(c, e, msg=name)
        (ge,) = torch.autograd.grad(e, xe, retain_graph=True)
        (gc,) = torch.autograd.grad(c, xc, retain_graph=True)
        torch.testing.assert_close(gc, ge, msg=name)


def test_generalized_dice_empty_class_takes_the_largest_present_weight():
    # One image, 3 classes: class 2 absent. Hand-computed weights: 1/T0², 1/T1², max of both.
    p = torch.tensor(
        [[[0.7, 0.2, 0.6, 0.1], [0.2, 0.7, 0.3, 0.8], [0.1, 0.1, 0.1, 0.1]]], dtype=F64
    )
    y = torch.tensor([[0, 1, 1, 1]])
    onehot = torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 1], [0, 0, 0, 0]], dtype=F64)
    w = torch.tensor([1.0, 1 / 9, 1.0], dtype=F64)  # T = (1, 3, 0): class 2 takes max(1, 1/9)
    inter, sums = (p[0] * onehot).sum(1), p[0].sum(1) + onehot.sum(1)
    expected = 1 - (2 * (w * inter).sum() + 1e-5) / ((w * sums).sum() + 1e-5)
    got = S.generalized_dice_loss(p.view(1, 3, 4, 1), y.view(1, 4, 1), activation=None, eps=0)
    torch.testing.assert_close(got, expected)
    # Nothing present (every pixel ignored): every weight 0, the loss 1 - s/s = 0.
    none = S.generalized_dice_loss(
        p.view(1, 3, 4, 1), torch.full((1, 4, 1), -1), activation=None, ignore_index=-1
    )
    assert float(none) == 0.0


def test_include_background_false_keeps_the_softmax_over_every_channel():
    # Activation before the channel is dropped: the foreground probabilities of a softmax over C.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=F64)
    y = torch.randint(3, (2, 4, 4), generator=g)
    got = S.dice_loss(x, y, include_background=False, reduction="none")
    p = x.softmax(1)[:, 1:].flatten(2)
    t = torch.nn.functional.one_hot(y, 3).movedim(-1, 1)[:, 1:].flatten(2).to(F64)
    expected = 1 - (2 * (p * t).sum(2) + 1e-5) / (p.sum(2) + t.sum(2) + 1e-5)
    torch.testing.assert_close(got, expected)


def test_dice_ce_without_background_in_the_ce_scores_no_pixel_when_all_is_background():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    y = torch.zeros(2, 4, 4, dtype=torch.long)
    loss = S.dice_ce_loss(x, y, ce_include_background=False, lambda_dice=0.0)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_every_functional_dispatches_through_its_backends_record():
    x, y = torch.randn(1, 2, 4, 4), torch.randint(2, (1, 4, 4))
    for name in S.__all__:
        if name == "signed_distance_map":
            continue
        fn = getattr(S, name)
        assert fn.backends.names == ("formula",), name
    with losskit.use_backend("formula"):
        S.dice_loss(x, y)
    with losskit.use_backend("torch"), pytest.raises(losskit.BackendUnsupportedError, match="no"):
        S.dice_loss(x, y)


def test_signed_distance_map_matches_brute_force():
    pytest.importorskip("scipy")
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(2, 2, 5, 6, generator=g) < 0.4
    masks[1, 0] = False  # empty
    masks[1, 1] = True  # full
    got = S.signed_distance_map(masks, spacing=(1.0, 2.0))
    assert got.dtype == torch.float32 and got.shape == masks.shape
    expected = R.signed_distance_map(masks.numpy(), spacing=(1.0, 2.0))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-6)
    index = torch.randint(3, (1, 4, 4), generator=g)
    from_index = S.signed_distance_map(index, num_classes=3)
    onehot = torch.nn.functional.one_hot(index, 3).movedim(-1, 1)
    torch.testing.assert_close(from_index, S.signed_distance_map(onehot))


def test_signed_distance_map_without_scipy_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    with pytest.raises(ImportError, match=r"needs SciPy.*losskit\[boundary\]"):
        S.signed_distance_map(torch.ones(1, 1, 3, 3), spacing=None)


def _shapes(g: torch.Generator, n: int, size: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy images with a bright disk (class 1) and a dark rectangle (class 2)."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = 0.3 * torch.randn(n, 1, size, size, generator=g)
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        cy, cx = torch.randint(5, size - 5, (2,), generator=g).tolist()
        r = int(torch.randint(3, 6, (1,), generator=g))
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        y0, x0 = torch.randint(0, size - 8, (2,), generator=g).tolist()
        rect = torch.zeros(size, size, dtype=torch.bool)
        rect[y0 : y0 + 6, x0 : x0 + 8] = True
        rect &= ~disk
        labels[i][disk], labels[i][rect] = 1, 2
        images[i, 0][disk] += 1.0
        images[i, 0][rect] -= 1.0
    return images, labels


def test_a_small_model_learns_synthetic_shapes_with_dice_ce_loss():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    train_x, train_y = _shapes(g, 64)
    test_x, test_y = _shapes(g, 32)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 3, 1),
    )
    # The nnU-Net recipe: Dice over the foreground classes, cross entropy over every class.
    criterion = losskit.nn.DiceCELoss(include_background=False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        idx = torch.randint(64, (8,), generator=g)
        loss = criterion(model(train_x[idx]), train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = model(test_x).argmax(1)
    # Hard Dice of each foreground class on the held-out images.
    dice = []
    for c in (1, 2):
        inter = ((pred == c) & (test_y == c)).sum().item()
        dice.append(2 * inter / ((pred == c).sum().item() + (test_y == c).sum().item()))
    assert min(dice) > 0.85, dice  # 0.96 and 0.98 when written
