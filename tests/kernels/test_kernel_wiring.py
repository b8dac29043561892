"""The public functional API reaches the kernels: under ``use_kernels("always")`` each hot loss runs
its fused kernel (seen in the autograd graph) and agrees with the PyTorch path, value and gradient."""

from __future__ import annotations

import pytest
import torch
from kernel_helpers import close, grads, leaf

import losskit
from losskit.kernels import use_kernels

pytest.importorskip("triton")


def _graph_names(out: torch.Tensor) -> set[str]:
    names, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None:
            names.add(type(node).__name__)
            stack.extend(n for n, _ in node.next_functions)
    return names


def _both_paths(fn, inputs, kernel_fn_name):
    ref_inputs = [leaf(t) for t in inputs]
    with use_kernels("never"):
        ref = fn(*ref_inputs)
    ref_grads = grads(ref, ref_inputs)
    kern_inputs = [leaf(t) for t in inputs]
    out = fn(*kern_inputs)  # inside the `kernels` fixture: "always"
    names = _graph_names(out)
    assert any(kernel_fn_name in n for n in names), names
    close(out, ref)
    for a, b in zip(grads(out, kern_inputs), ref_grads, strict=True):
        close(a, b)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cross_entropy_uses_the_kernel(kernels, reduction):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 3, generator=g)  # (N, C, d1): K-dimensional
    t = torch.randint(0, 5, (6, 3), generator=g)
    t[0, 0] = -100
    w = torch.rand(5, generator=g) + 0.5
    _both_paths(
        lambda x: losskit.cross_entropy(x, t, weight=w, label_smoothing=0.1, reduction=reduction),
        [x],
        "CrossEntropyFunction",
    )


def test_unbatched_cross_entropy_uses_the_kernel(kernels):
    x = torch.randn(7, generator=torch.Generator().manual_seed(1))
    _both_paths(
        lambda x: losskit.cross_entropy(x, torch.tensor(3), reduction="none"),
        [x],
        "CrossEntropyFunction",
    )


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_bce_with_logits_and_sigmoid_focal_use_the_kernel(kernels, reduction):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 7, generator=g) * 3
    y = (torch.rand(4, 7, generator=g) > 0.5).float()
    pw = torch.rand(7, generator=g) + 0.5
    _both_paths(
        lambda x: losskit.binary_cross_entropy_with_logits(
            x, y, pos_weight=pw, reduction=reduction
        ),
        [x],
        "BinaryLossFunction",
    )
    _both_paths(
        lambda x: losskit.sigmoid_focal_loss(x, y, gamma=1.5, reduction=reduction),
        [x],
        "BinaryLossFunction",
    )


@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_uses_the_kernel(kernels, log_target):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 9, generator=g).log_softmax(1)
    t = torch.randn(5, 9, generator=g).softmax(1)
    t = t.log() if log_target else t
    _both_paths(
        lambda x: losskit.kl_div(x, t, reduction="batchmean", log_target=log_target),
        [x],
        "KLDivFunction",
    )


def test_batch_hard_triplet_mines_with_the_kernel(kernels, monkeypatch):
    from losskit.kernels.triplet import function

    calls = []
    real = function.triton_batch_hard_mine

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(function, "triton_batch_hard_mine", spy)
    g = torch.Generator().manual_seed(4)
    emb = torch.randn(12, 6, generator=g)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 4])  # class 3 has no positive
    for metric in ("euclidean", "squared_euclidean", "cosine"):
        with use_kernels("never"):
            a = leaf(emb)
            ref = losskit.metric.triplet_loss(a, labels, mining="batch_hard", metric=metric)
            ref.backward()
        b = leaf(emb)
        out = losskit.metric.triplet_loss(b, labels, mining="batch_hard", metric=metric)
        out.backward()
        close(out, ref)
        close(b.grad, a.grad)
    assert len(calls) == 3
