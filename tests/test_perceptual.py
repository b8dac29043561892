"""PerceptualLoss through a small conv net built here (no downloads).

The oracle is the same features computed by hand, calling the net's layers one after the other.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as TF
from torch import nn

from losskit.nn import PerceptualLoss

F64 = torch.float64


class TinyNet(nn.Module):
    """conv -> relu -> batchnorm -> conv -> dropout -> relu -> (head, never needed)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act1 = nn.ReLU()
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 5, 3, stride=2, padding=1)
        self.drop = nn.Dropout(0.5)
        self.act2 = nn.ReLU()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(5 * 4 * 4, 2))
        self.unused = nn.Linear(2, 2)
        self.head_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(self.drop(self.conv2(self.bn(self.act1(self.conv1(x))))))
        self.head_calls += 1
        return self.head(x)


def make_net() -> TinyNet:
    torch.manual_seed(0)
    net = TinyNet().double()
    with torch.no_grad():  # non-trivial running statistics, so eval mode is visible
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net


def manual_features(net: TinyNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The eval-mode features of ``net`` at each named layer, layer by layer."""
    c1 = net.conv1(x)
    a1 = torch.relu(c1)
    bn = (a1 - net.bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
        net.bn.running_var.view(1, -1, 1, 1) + net.bn.eps
    ) * net.bn.weight.view(1, -1, 1, 1) + net.bn.bias.view(1, -1, 1, 1)
    c2 = net.conv2(bn)
    a2 = torch.relu(c2)  # dropout is the identity in eval mode
    return {"conv1": c1, "act1": a1, "bn": bn, "conv2": c2, "act2": a2}


def per_sample(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    diff = (a - b) ** 2 if kind == "mse" else (a - b).abs()
    return diff.flatten(1).mean(1)


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 8, 8, generator=g, dtype=F64), torch.randn(
        3, 3, 8, 8, generator=g, dtype=F64
    )


@pytest.mark.parametrize("criterion", ["mse", "l1"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_value_matches_manual_features(images, criterion, reduction):
    x, y = images
    net = make_net()
    layers, weights = ["act1", "bn", "act2"], [1.0, 0.5, 2.0]
    loss = PerceptualLoss(net, layers, weights, criterion=criterion, reduction=reduction)
    out = loss(x, y)
    with torch.no_grad():
        fx, fy = manual_features(net, x), manual_features(net, y)
    ell = sum(w * per_sample(fx[n], fy[n], criterion) for n, w in zip(layers, weights, strict=True))
    expected = {"none": ell, "mean": ell.mean(), "sum": ell.sum()}[reduction]
    torch.testing.assert_close(out, expected)


def test_callable_criterion_and_mapping_weights(images):
    x, y = images
    net = make_net()
    crit = functools.partial(TF.smooth_l1_loss, reduction="none", beta=0.5)
    loss = PerceptualLoss(net, ["conv1", "conv2"], {"conv2": 3.0, "conv1": 0.1}, criterion=crit)
    with torch.no_grad():
        fx, fy = manual_features(net, x), manual_features(net, y)
    expected = (
        0.1 * crit(fx["conv1"], fy["conv1"]).flatten(1).mean(1)
        + 3.0 * crit(fx["conv2"], fy["conv2"]).flatten(1).mean(1)
    ).mean()
    torch.testing.assert_close(loss(x, y), expected)


def test_root_layer_is_the_extractor_output(images):
    x, y = images
    net = make_net()
    torch.testing.assert_close(
        PerceptualLoss(net, "")(x, y), TF.mse_loss(net.eval()(x), net(y)).detach()
    )


def test_gradient_reaches_input_not_target_nor_extractor(images):
    x, y = images
    net = make_net()
    x = x.clone().requires_grad_(True)
    y = y.clone().requires_grad_(True)
    PerceptualLoss(net, ["act1", "act2"])(x, y).backward()
    # Oracle: autograd through the hand-written features, with the target held constant.
    x2 = x.detach().clone().requires_grad_(True)
    with torch.no_grad():
        fy = manual_features(net, y)
    fx = manual_features(net, x2)
    manual = per_sample(fx["act1"], fy["act1"], "mse") + per_sample(fx["act2"], fy["act2"], "mse")
    (expected,) = torch.autograd.grad(manual.mean(), x2)
    torch.testing.assert_close(x.grad, expected)
    assert y.grad is None
    assert all(p.grad is None for p in net.parameters())


def test_extractor_frozen_and_kept_in_eval_mode(images):
    x, y = images
    net = make_net()
    net.train()
    loss = PerceptualLoss(net, ["bn", "act2"])
    assert not any(p.requires_grad for p in net.parameters())
    assert [p for p in loss.parameters() if p.requires_grad] == []
    loss.train()
    assert loss.training and not net.training
    assert not any(m.training for m in net.modules())
    stats = (net.bn.running_mean.clone(), net.bn.running_var.clone())
    first, second = loss(x, y), loss(x, y)  # dropout off, batchnorm uses its running statistics
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(net.bn.running_mean, stats[0], rtol=0, atol=0)
    torch.testing.assert_close(net.bn.running_var, stats[1], rtol=0, atol=0)
    loss.eval().train(True)
    assert not net.training


def test_hooks_removed_and_unneeded_layers_not_run(images):
    x, y = images
    net = make_net()
    loss = PerceptualLoss(net, ["conv1", "act2"])
    loss(x, y)
    assert net.head_calls == 0  # both passes stopped after act2
    assert all(not m._forward_hooks for m in net.modules())
    PerceptualLoss(net, [""])(x, y)  # the root: the whole forward runs
    assert net.head_calls == 2
    assert all(not m._forward_hooks for m in net.modules())


def test_moves_with_the_loss_module():
    net = TinyNet()  # float32
    loss = PerceptualLoss(net, "act1").double()
    x = torch.randn(2, 3, 8, 8, dtype=F64)
    assert net.conv1.weight.dtype == F64
    assert loss(x, x + 1).dtype == F64


def test_unknown_layer_lists_available_names():
    with pytest.raises(ValueError, match=r"unknown layer name\(s\) \['conv3'\].*'conv1'.*'act2'"):
        PerceptualLoss(make_net(), ["conv1", "conv3"])


def test_layer_not_called_in_forward(images):
    loss = PerceptualLoss(make_net(), ["unused"])
    with pytest.raises(ValueError, match=r"\['unused'\] were not called"):
        loss(*images)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"layers": []}, ValueError, r"at least one layer"),
        ({"layers": ["act1", "act1"]}, ValueError, r"must not repeat"),
        ({"layers": [1]}, TypeError, r"layers must be a layer name"),
        ({"layers": ["act1"], "layer_weights": [1.0, 2.0]}, ValueError, r"one weight per layer"),
        ({"layers": ["act1"], "layer_weights": {"bn": 1.0}}, ValueError, r"name exactly"),
        ({"layers": ["act1"], "layer_weights": ["x"]}, TypeError, r"layer_weights must be a real"),
        ({"layers": ["act1"], "criterion": "l2"}, ValueError, r"criterion must be 'mse', 'l1'"),
        ({"layers": ["act1"], "criterion": 3}, TypeError, r"criterion must be"),
        ({"layers": ["act1"], "reduction": "avg"}, ValueError, r"'avg' is not a valid value"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        PerceptualLoss(make_net(), **kwargs)


def test_bad_extractor_and_inputs(images):
    x, y = images
    with pytest.raises(TypeError, match=r"feature_extractor must be an nn.Module"):
        PerceptualLoss(lambda z: z, ["a"])
    loss = PerceptualLoss(make_net(), "act1")
    with pytest.raises(ValueError, match=r"target size \(2, 3, 8, 8\)"):
        loss(x, y[:2])
    with pytest.raises(TypeError, match=r"input must be a floating"):
        loss(x.long(), y)
    reducing = PerceptualLoss(make_net(), "act1", criterion=lambda a, b: ((a - b) ** 2).mean())
    with pytest.raises(ValueError, match=r"criterion must return an unreduced tensor"):
        reducing(x, y)
