"""Batch-hard mining kernel and the public batch-hard triplet loss (which mines with it) against a
brute-force loop and a plain PyTorch formula."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from kernel_helpers import close, grads, leaf

import losskit
from losskit.kernels.triplet import function as tri_fn
from losskit.kernels.triplet.rules import batch_hard_kernel
from losskit.metric import batch_hard_triplets


def maybe_batch_hard_mining(x, labels):
    return batch_hard_kernel(x, labels, "euclidean", 2.0)


def batch_hard_triplet_loss(
    x, labels, margin=0.2, metric="euclidean", soft_margin=False, reduction="mean"
):
    return losskit.metric.triplet_loss(
        x,
        labels,
        margin=margin,
        mining="batch_hard",
        metric=metric,
        soft_margin=soft_margin,
        reduction=reduction,
    )


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    # 16-wide tiles: the odd batch sizes below span several tiles with a ragged last one.
    monkeypatch.setattr(tri_fn, "BLOCK_M", 16)
    monkeypatch.setattr(tri_fn, "BLOCK_N", 16)
    monkeypatch.setattr(tri_fn, "BLOCK_D", 16)


def _brute_force_mining(x: torch.Tensor, labels: torch.Tensor):
    x = x.double()
    pos, neg = [], []
    for i in range(x.shape[0]):
        best_p, best_n = (-1.0, -1), (float("inf"), -1)
        for j in range(x.shape[0]):
            d = float(((x[i] - x[j]) ** 2).sum())
            if labels[j] == labels[i] and j != i and d > best_p[0]:
                best_p = (d, j)
            if labels[j] != labels[i] and d < best_n[0]:
                best_n = (d, j)
        pos.append(best_p[1])
        neg.append(best_n[1])
    return torch.tensor(pos), torch.tensor(neg)


def _plain_batch_hard(x, labels, margin, metric, soft, reduction):
    """The textbook B x B formula (Hermans et al.), with autograd through the full matrix."""
    if metric == "cosine":
        xn = torch.nn.functional.normalize(x, dim=1)
        d = 1.0 - xn @ xn.t()
    else:
        d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        d = d2 if metric == "squared_euclidean" else d2.clamp_min(1e-12).sqrt()
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool)
    pos_mask, neg_mask = same & ~eye, ~same
    d_ap = torch.where(pos_mask, d, torch.full_like(d, -1e9)).max(1).values
    d_an = torch.where(neg_mask, d, torch.full_like(d, 1e9)).min(1).values
    valid = pos_mask.any(1) & neg_mask.any(1)
    # losskit.metric.triplet_loss: the soft margin is softplus(delta + margin); "none" lists the
    # mined triplets (the valid anchors) only.
    delta = d_ap - d_an + margin
    per = torch.nn.functional.softplus(delta) if soft else delta.clamp_min(0)
    per = torch.where(valid, per, torch.zeros_like(per))
    if reduction == "none":
        return per[valid]
    if reduction == "sum":
        return per.sum()
    return per.sum() / valid.sum().clamp_min(1)


LAYOUTS = {
    "balanced": lambda g, b: torch.arange(b) % 5,
    "unbalanced": lambda g, b: torch.where(
        torch.rand(b, generator=g) < 0.8, 0, torch.randint(1, 4, (b,), generator=g)
    ),
    "one class": lambda g, b: torch.zeros(b, dtype=torch.long),
    "all distinct": lambda g, b: torch.arange(b),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize(("b", "d"), [(37, 19), (16, 64), (3, 5)])
def test_mining_matches_brute_force(kernels, layout, b, d):
    g = torch.Generator().manual_seed(b * d)
    x = torch.randn(b, d, generator=g)
    labels = LAYOUTS[layout](g, b)
    mined = maybe_batch_hard_mining(x, labels)
    assert mined is not None
    expected = _brute_force_mining(x, labels)
    assert torch.equal(mined[0], expected[0]) and torch.equal(mined[1], expected[1])


def test_mining_non_contiguous_and_bfloat16(kernels):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(21, 40, generator=g)[:, ::2]  # (21, 20), column stride 2
    assert not x.is_contiguous()
    labels = torch.arange(21) % 4
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            maybe_batch_hard_mining(x, labels), _brute_force_mining(x, labels), strict=True
        )
    )
    xb = x.bfloat16()
    mined = maybe_batch_hard_mining(xb, labels)
    expected = _brute_force_mining(xb.float(), labels)
    assert torch.equal(mined[0], expected[0]) and torch.equal(mined[1], expected[1])


@pytest.mark.parametrize("metric", ["euclidean", "squared_euclidean", "cosine"])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout", ["balanced", "unbalanced", "one class"])
def test_loss_and_gradient_match_the_plain_formula(kernels, metric, soft, reduction, layout):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(29, 7, generator=g, dtype=torch.float32)
    labels = LAYOUTS[layout](g, 29)
    a, b = leaf(x), leaf(x.double())
    ours = batch_hard_triplet_loss(
        a, labels, margin=0.3, metric=metric, soft_margin=soft, reduction=reduction
    )
    theirs = _plain_batch_hard(b, labels, 0.3, metric, soft, reduction)
    close(ours, theirs, 1e-5, 1e-5)
    ga, gb = grads(ours, [a])[0], grads(theirs, [b])[0]
    close(ga, gb, 1e-4, 1e-5)
    if layout == "one class":  # no negatives anywhere: loss 0, zero gradient
        assert not ours.any() and not ga.any()


def test_public_miner_uses_the_kernel_and_agrees_with_brute_force(kernels):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(23, 9, generator=g)
    labels = LAYOUTS["unbalanced"](g, 23)
    anchors, pos, neg = batch_hard_triplets(x, labels)
    exp_pos, exp_neg = _brute_force_mining(x, labels)
    valid = (exp_pos >= 0) & (exp_neg >= 0)
    assert torch.equal(anchors, valid.nonzero(as_tuple=True)[0])
    assert torch.equal(pos, exp_pos[valid]) and torch.equal(neg, exp_neg[valid])


def test_pytorch_path_gives_the_same_loss(pytorch_path):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(20, 6, generator=g, dtype=torch.float64)
    labels = torch.arange(20) % 3
    close(
        batch_hard_triplet_loss(x, labels),
        _plain_batch_hard(x, labels, 0.2, "euclidean", False, "mean"),
    )
