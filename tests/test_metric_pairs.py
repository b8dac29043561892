"""Pair mining, contrastive and multi-similarity losses: brute-force oracles and edge cases.

Values and gradients on the registry samples are checked by the conformance suite (NumPy
reference, finite differences); here: the pair miner against the reference loops, degenerate
batches, and an autograd loop over every pair for the gradients on several label layouts.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import losskit
from losskit import reference as R
from losskit.metric import contrastive_loss, mine_pairs, multi_similarity_loss

F64 = torch.float64
LAYOUTS = {
    "PxK": torch.arange(3).repeat_interleave(3),
    "one class": torch.zeros(6, dtype=torch.int64),
    "all distinct": torch.tensor([3, 0, 5, 1, 2]),
    "unbalanced": torch.tensor([4, 0, 4, 7, 0, 4, 9, 4, 7, 0]),
}


def _x(n: int, d: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("strategy", ["all", "hard", "easy"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_mine_pairs_matches_brute_force(layout, metric, strategy):
    labels = LAYOUTS[layout]
    x = _x(len(labels))
    for epsilon in (0.0, 0.3):
        ours = mine_pairs(x, labels, strategy, epsilon, metric)
        ref = R.mine_pairs(x.numpy(), labels.numpy(), strategy, epsilon, metric)
        for a, b in zip(ours, ref, strict=True):
            np.testing.assert_array_equal(a.numpy(), b)


def test_hard_and_easy_pairs_partition_the_pairs_of_valid_anchors():
    labels = LAYOUTS["unbalanced"]
    x = _x(len(labels), seed=4)
    hard, easy, every = (mine_pairs(x, labels, s, 0.2) for s in ("hard", "easy", "all"))
    # Anchor 6 (label 9) has no positive: it is in "all" (negatives only) but not in hard/easy.
    assert 6 in every.neg_anchor.tolist() and 6 not in hard.neg_anchor.tolist()
    keep = every.neg_anchor != 6
    assert len(hard.negative) + len(easy.negative) == int(keep.sum())
    assert len(hard.positive) + len(easy.positive) == len(every.positive)


def _loop_contrastive(x, labels, pos_margin, neg_margin, reduction):
    pos, neg = [], []
    for i, j in itertools.permutations(range(len(labels)), 2):
        d = torch.sqrt(((x[i] - x[j]) ** 2).sum())
        if labels[i] == labels[j]:
            pos.append(torch.relu(d - pos_margin))
        else:
            neg.append(torch.relu(neg_margin - d))
    if reduction == "sum":
        return sum(pos + neg, x.sum() * 0)

    def mean_nonzero(values):
        nz = [v for v in values if v.item() > 0]
        return sum(nz, x.sum() * 0) / max(len(nz), 1)

    return mean_nonzero(pos) + mean_nonzero(neg)


def _loop_multi_similarity(x, labels, alpha, beta, base, epsilon, mining):
    xn = x / x.norm(dim=1, keepdim=True)
    total = x.sum() * 0
    y = labels.tolist()
    for i in range(len(y)):
        pos = [xn[i] @ xn[j] for j in range(len(y)) if j != i and y[j] == y[i]]
        neg = [xn[i] @ xn[j] for j in range(len(y)) if y[j] != y[i]]
        if mining and pos and neg:
            lo, hi = min(s.item() for s in pos), max(s.item() for s in neg)
            pos, neg = (
                [s for s in pos if s.item() < hi + epsilon],
                [s for s in neg if s.item() > lo - epsilon],
            )
        if not pos or not neg:
            continue
        total = total + torch.log(1 + sum(torch.exp(-alpha * (s - base)) for s in pos)) / alpha
        total = total + torch.log(1 + sum(torch.exp(beta * (s - base)) for s in neg)) / beta
    return total / max(len(y), 1)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_gradients_match_autograd_loops(layout):
    labels = LAYOUTS[layout]
    x = _x(len(labels), seed=9)
    cases = [
        (
            lambda x, r=r: contrastive_loss(x, labels, 0.4, 2.0, reduction=r),
            lambda x, r=r: _loop_contrastive(x, labels, 0.4, 2.0, r),
        )
        for r in ("mean", "sum")
    ] + [
        (
            lambda x, m=m: multi_similarity_loss(x, labels, 2.0, 10.0, 0.5, 0.3, m),
            lambda x, m=m: _loop_multi_similarity(x, labels, 2.0, 10.0, 0.5, 0.3, m),
        )
        for m in (True, False)
    ]
    for ours_fn, loop_fn in cases:
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        ours, theirs = ours_fn(x1), loop_fn(x2)
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
        (g1,) = torch.autograd.grad(ours, x1)
        (g2,) = torch.autograd.grad(theirs, x2)
        torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("layout", ["one class", "all distinct", "empty"])
def test_degenerate_batches_give_zero_with_zero_gradient(layout):
    labels = LAYOUTS.get(layout, torch.zeros(0, dtype=torch.int64))
    x = _x(len(labels)).float().requires_grad_()
    for fn in (multi_similarity_loss, contrastive_loss):
        for reduction in ("mean", "sum"):
            out = fn(x, labels, reduction=reduction)
            assert out.grad_fn is not None
            (g,) = torch.autograd.grad(out, x)
            assert torch.isfinite(g).all()
            if fn is multi_similarity_loss or layout == "empty":
                assert out.item() == 0.0 and torch.all(g == 0)


def test_multi_similarity_is_finite_for_large_temperatures():
    labels = LAYOUTS["PxK"]
    x = _x(len(labels)).float().requires_grad_()
    out = multi_similarity_loss(x, labels, alpha=200.0, beta=5000.0, base=-0.9, mining=False)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(x.grad).all()


def test_multi_similarity_none_is_per_anchor_with_skipped_zero():
    labels = torch.tensor([0, 0, 1, 2, 2])  # anchor 2 has no positive
    out = multi_similarity_loss(_x(5), labels, reduction="none")
    assert out.shape == (5,) and out[2] == 0
    torch.testing.assert_close(out.mean(), multi_similarity_loss(_x(5), labels))


def test_modules_match_functionals_and_validate():
    labels = LAYOUTS["unbalanced"]
    x = _x(len(labels))
    torch.testing.assert_close(
        losskit.nn.ContrastiveLoss(0.2, 1.5, metric="cosine")(x, labels),
        contrastive_loss(x, labels, 0.2, 1.5, "cosine"),
    )
    torch.testing.assert_close(
        losskit.nn.MultiSimilarityLoss(alpha=1.0, mining=False)(x, labels),
        multi_similarity_loss(x, labels, alpha=1.0, mining=False),
    )
    with pytest.raises(ValueError, match="beta"):
        losskit.nn.MultiSimilarityLoss(beta=0.0)
    with pytest.raises(ValueError, match="strategy"):
        mine_pairs(x, labels, strategy="semi")
