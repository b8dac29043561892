"""The segmentation losses against MONAI 1.x and segmentation_models_pytorch (smp) >= 0.6 under
each option mapping documented in the docstrings (optional peers: skipped when not installed).

Every class is present in every target here, except where a test says otherwise: smp zeroes the
loss of a class absent from the target, losskit scores it (documented).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import pytest
import torch

from losskit import segmentation as S

F64 = torch.float64


def _smp_losses():
    """``segmentation_models_pytorch.losses`` without the package's heavy imports if need be.

    smp's ``__init__`` imports its encoders (timm, huggingface_hub); the losses subpackage needs
    only torch and numpy, so when the full import fails it is loaded under an empty parent."""
    try:
        return importlib.import_module("segmentation_models_pytorch.losses")
    except ImportError:
        spec = importlib.util.find_spec("segmentation_models_pytorch")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("segmentation_models_pytorch is not installed")
        for name in [m for m in sys.modules if m.startswith("segmentation_models_pytorch")]:
            del sys.modules[name]
        parent = types.ModuleType("segmentation_models_pytorch")
        parent.__path__ = list(spec.submodule_search_locations)
        sys.modules["segmentation_models_pytorch"] = parent
        return importlib.import_module("segmentation_models_pytorch.losses")


def _data(c: int = 4, dtype=F64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, c, 8, 9, generator=g, dtype=dtype)
    y = torch.randint(c, (3, 8, 9), generator=g)
    y[:, 0, :c] = torch.arange(c)  # every class in every image
    return x, y


def _both(ours, theirs, x, rtol=1e-7, atol=1e-9):
    """Values and input gradients of two callables of the logits."""
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    va, vb = ours(a), theirs(b)
    torch.testing.assert_close(va, vb.to(va.dtype).reshape(va.shape), rtol=rtol, atol=atol)
    va.sum().backward()
    vb.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=rtol * 10, atol=atol * 10)


# ---------------------------------------------------------------- MONAI

MONAI_DICE = [
    ({}, {}),
    ({"include_background": False}, {"include_background": False}),
    ({"batch": True, "squared_pred": True}, {"batch_dice": True, "squared_pred": True}),
    ({"ignore_index": 2, "batch": True}, {"ignore_index": 2, "batch_dice": True}),
    ({"smooth_nr": 0.5, "smooth_dr": 0.5, "reduction": "none"}, {"smooth": 0.5}),
    ({"reduction": "sum", "include_background": False}, {"include_background": False}),
]


@pytest.mark.parametrize(("theirs", "ours"), MONAI_DICE, ids=str)
def test_dice_equals_monai_dice_loss(theirs, ours):
    monai = pytest.importorskip("monai.losses")
    x, y = _data()
    red = theirs.get("reduction", "mean")
    peer = monai.DiceLoss(softmax=True, to_onehot_y=True, **theirs)
    _both(
        lambda a: S.dice_loss(a, y, eps=0.0, reduction=red, **ours),
        lambda a: peer(a, y[:, None]),
        x,
    )


def test_dice_with_sigmoid_one_hot_and_jaccard_equal_monai():
    monai = pytest.importorskip("monai.losses")
    x, y = _data()
    onehot = torch.nn.functional.one_hot(y, 4).movedim(-1, 1).to(F64)
    peer = monai.DiceLoss(sigmoid=True)
    _both(
        lambda a: S.dice_loss(a, onehot, activation="sigmoid", eps=0.0),
        lambda a: peer(a, onehot),
        x,
    )
    # MONAI's jaccard=True: (2I + s) / (2(P + T - I) + s), ours with smooth = s / 2.
    jac = monai.DiceLoss(softmax=True, to_onehot_y=True, jaccard=True, smooth_nr=1.0, smooth_dr=1.0)
    _both(lambda a: S.jaccard_loss(a, y, smooth=0.5, eps=0.0), lambda a: jac(a, y[:, None]), x)


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("absent", [False, True], ids=["all-present", "class-absent"])
def test_generalized_dice_equals_monai_including_the_empty_class_rule(batch, absent):
    monai = pytest.importorskip("monai.losses")
    x, y = _data()
    if absent:
        y[0][y[0] == 3] = 1  # class 3 absent from image 0
    peer = monai.GeneralizedDiceLoss(softmax=True, to_onehot_y=True, batch=batch)
    # MONAI computes the weights from a float32 target sum: agreement to float32 precision.
    _both(
        lambda a: S.generalized_dice_loss(a, y, eps=0.0, batch_dice=batch),
        lambda a: peer(a, y[:, None]),
        x,
        rtol=1e-6,
        atol=1e-7,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0.3, "beta": 0.7},
        {"alpha": 0.7, "beta": 0.3, "include_background": False},
        {"alpha": 1.0, "beta": 1.0, "batch": True},
    ],
    ids=str,
)
def test_tversky_equals_monai(kwargs):
    monai = pytest.importorskip("monai.losses")
    x, y = _data()
    peer = monai.TverskyLoss(softmax=True, to_onehot_y=True, **kwargs)
    ours = {k.replace("batch", "batch_dice"): v for k, v in kwargs.items()}
    _both(lambda a: S.tversky_loss(a, y, eps=0.0, **ours), lambda a: peer(a, y[:, None]), x)


@pytest.mark.parametrize("include_background", [True, False])
def test_dice_ce_equals_monai_dice_ce_loss(include_background):
    monai = pytest.importorskip("monai.losses")
    x, y = _data()
    peer = monai.DiceCELoss(softmax=True, to_onehot_y=True, include_background=include_background)
    _both(
        lambda a: S.dice_ce_loss(a, y, eps=0.0, include_background=include_background),
        lambda a: peer(a, y[:, None]),
        x,
    )
    # One channel under sigmoid: MONAI uses BCE with logits there, as we do.
    xb, yb = x[:, :1], (y > 1).long()
    binary = monai.DiceCELoss(sigmoid=True)
    _both(
        lambda a: S.dice_ce_loss(a, yb, activation="sigmoid", eps=0.0),
        lambda a: binary(a, yb[:, None].to(F64)),
        xb,
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"gamma": 2.0}, {"gamma": 1.5, "alpha": 0.25, "include_background": False}],
    ids=str,
)
def test_dice_focal_equals_monai_dice_focal_loss_under_sigmoid(kwargs):
    monai = pytest.importorskip("monai.losses")
    x, y = _data()
    onehot = torch.nn.functional.one_hot(y, 4).movedim(-1, 1).to(F64)
    peer = monai.DiceFocalLoss(sigmoid=True, **kwargs)
    bg = kwargs.get("include_background", True)
    ours = {
        "gamma": kwargs["gamma"],
        "alpha": kwargs.get("alpha"),
        "include_background": bg,
        "focal_include_background": bg,
    }
    # MONAI's focal term runs in float32 internally.
    _both(
        lambda a: S.dice_focal_loss(a, onehot, activation="sigmoid", eps=0.0, **ours),
        lambda a: peer(a, onehot),
        x,
        rtol=1e-6,
        atol=1e-7,
    )


# ---------------------------------------------------------------- smp


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [
        ({}, {"smooth": 0.0, "eps": 2e-7}),
        ({"smooth": 1.0, "eps": 1e-3}, {"smooth": 2.0, "eps": 2e-3}),
        ({"ignore_index": 255}, {"ignore_index": 255, "smooth": 0.0, "eps": 2e-7}),
        ({"class_weights": [1.0, 2.0, 0.5, 1.0]}, {"smooth": 0.0, "eps": 2e-7}),
    ],
    ids=str,
)
def test_dice_equals_smp_dice_loss(theirs, ours):
    losses = _smp_losses()
    x, y = _data(dtype=torch.float32)
    if "ignore_index" in theirs:
        y[:, 5:] = 255
    if "class_weights" in theirs:
        ours = {**ours, "weight": torch.tensor(theirs["class_weights"])}
    peer = losses.DiceLoss("multiclass", **theirs)
    # smp 0.6 writes Dice as Tversky(1/2, 1/2): its smooth and eps are halves of ours.
    _both(
        lambda a: S.dice_loss(a, y, batch_dice=True, **ours),
        lambda a: peer(a, y),
        x,
        rtol=2e-6,
        atol=1e-6,
    )


def test_jaccard_tversky_and_focal_tversky_equal_smp():
    losses = _smp_losses()
    x, y = _data(dtype=torch.float32)
    f32 = {"rtol": 2e-6, "atol": 1e-6}
    jac = losses.JaccardLoss("multiclass", smooth=1.0)
    _both(
        lambda a: S.jaccard_loss(a, y, batch_dice=True, smooth=1.0), lambda a: jac(a, y), x, **f32
    )
    tv = losses.TverskyLoss("multiclass", alpha=0.3, beta=0.7)
    _both(
        lambda a: S.tversky_loss(a, y, alpha=0.3, beta=0.7, batch_dice=True, smooth=0.0),
        lambda a: tv(a, y),
        x,
        **f32,
    )
    # smp raises the class mean to gamma: equal to ours for one (binary) class.
    xb, yb = x[:, :1], (y > 1).long()
    ftv = losses.TverskyLoss("binary", alpha=0.3, beta=0.7, gamma=0.75)
    _both(
        lambda a: S.focal_tversky_loss(
            a, yb, activation="sigmoid", batch_dice=True, smooth=0.0, gamma=0.75
        ),
        lambda a: ftv(a, yb[:, None]),
        xb,
        **f32,
    )


def test_a_class_absent_from_the_target_is_where_smp_differs():
    losses = _smp_losses()
    x, y = _data(dtype=torch.float32)
    y[y == 3] = 1  # class 3 absent from the whole batch
    ours = S.dice_loss(x, y, batch_dice=True, smooth=0.0, eps=2e-7, reduction="none")
    theirs = losses.DiceLoss("multiclass")(x, y)
    # smp sets the absent class's loss to 0 and still averages over 4 classes.
    torch.testing.assert_close(theirs, ours[:3].sum() / 4, rtol=2e-6, atol=1e-6)
    assert float(ours[3]) == pytest.approx(1.0)


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("ignore_index", [None, 2])
def test_lovasz_softmax_equals_smp_lovasz_loss(per_image, ignore_index):
    losses = _smp_losses()
    x, y = _data(dtype=torch.float32)
    peer = losses.LovaszLoss("multiclass", per_image=per_image, ignore_index=ignore_index)
    _both(
        lambda a: S.lovasz_softmax_loss(a, y, batch_dice=not per_image, ignore_index=ignore_index),
        lambda a: peer(a, y),
        x,
        rtol=2e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize("per_image", [False, True])
def test_lovasz_hinge_equals_smp_binary_lovasz_loss(per_image):
    losses = _smp_losses()
    x, y = _data(c=1, dtype=torch.float32)
    y = torch.randint(2, y.shape, generator=torch.Generator().manual_seed(3))
    peer = losses.LovaszLoss("binary", per_image=per_image)
    # smp's binary per-image path iterates over the first dimension of (N, H, W) logits.
    target = y if per_image else y[:, None]
    _both(
        lambda a: S.lovasz_hinge_loss(a, y, batch_dice=not per_image),
        lambda a: peer(a[:, 0] if per_image else a, target),
        x,
        rtol=2e-6,
        atol=1e-6,
    )
