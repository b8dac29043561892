"""Ranking / margin family: behaviours the registry-driven suite cannot express.

Oracles: ``torch.nn.functional`` (same inputs), closed forms worked out by hand, and the NumPy
reference. Never the code under test.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import losskit
from losskit import nn as lnn
from losskit import reference as R

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def _value_and_grads(fn, tensors, **kwargs):
    leaves = [_leaf(t) for t in tensors]
    out = fn(*leaves, **kwargs)
    grads = torch.autograd.grad(out.sum(), leaves, allow_unused=True)
    return out.detach(), grads


def _assert_same_as_torch(ours_fn, torch_fn, tensors, rtol=1e-10, atol=1e-12, **kwargs):
    v_o, g_o = _value_and_grads(ours_fn, tensors, **kwargs)
    v_t, g_t = _value_and_grads(torch_fn, tensors, **kwargs)
    torch.testing.assert_close(v_o, v_t, rtol=rtol, atol=atol)
    for a, b in zip(g_o, g_t, strict=True):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- "blog post" checks on random data


@pytest.mark.parametrize("margin", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_margin_ranking_module_matches_torch_on_random_batches(margin, reduction):
    g = _gen(0)
    x1, x2 = torch.randn(256, generator=g), torch.randn(256, generator=g)
    y = torch.randint(0, 2, (256,), generator=g).float() * 2 - 1
    ours = lnn.MarginRankingLoss(margin=margin, reduction=reduction)
    theirs = torch.nn.MarginRankingLoss(margin=margin, reduction=reduction)
    _assert_same_as_torch(ours, theirs, (x1, x2, y), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"swap": True},
        {"p": 1.0},
        {"p": 3.0},
        {"p": 1.0, "swap": True, "margin": 0.3},
        {"p": 3.0, "swap": True, "eps": 1e-4},
    ],
    ids=str,
)
def test_triplet_margin_module_matches_torch_on_random_batches(kwargs):
    g = _gen(1)
    a = torch.randn(128, 32, generator=g)
    pos = a + 0.8 * torch.randn(128, 32, generator=g)
    neg = pos + 0.8 * torch.randn(128, 32, generator=g)  # often nearer p than a: swap matters
    ours = lnn.TripletMarginLoss(**kwargs)
    theirs = torch.nn.TripletMarginLoss(**kwargs)
    _assert_same_as_torch(ours, theirs, (a, pos, neg), rtol=1e-5, atol=1e-6)


def test_triplet_swap_changes_the_loss_exactly_where_the_positive_is_nearer_the_negative():
    # Closed form with eps = 0 on the real line: a = 0, p = 2, n = 3, margin 1.
    # d(a,p) = 2, d(a,n) = 3, d(p,n) = 1: no swap 2 - 3 + 1 = 0; swap 2 - 1 + 1 = 2.
    a, p, n = (torch.tensor([[v]], dtype=F64) for v in (0.0, 2.0, 3.0))
    plain = losskit.triplet_margin_loss(a, p, n, eps=0.0, reduction="none")
    swapped = losskit.triplet_margin_loss(a, p, n, eps=0.0, swap=True, reduction="none")
    assert plain.tolist() == [0.0]
    assert swapped.tolist() == [2.0]


# ---------------------------------------------------------------- pairwise_distance


@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, 0.5, math.inf, 0.0, -1.0])
@pytest.mark.parametrize("keepdim", [False, True])
def test_pairwise_distance_matches_torch_including_eps_placement(p, keepdim):
    g = _gen(2)
    x1, x2 = torch.randn(6, 5, generator=g, dtype=F64), torch.randn(6, 5, generator=g, dtype=F64)
    kwargs = {"p": p, "eps": 1e-3, "keepdim": keepdim}
    _assert_same_as_torch(losskit.pairwise_distance, TF.pairwise_distance, (x1, x2), **kwargs)
    np.testing.assert_allclose(
        losskit.pairwise_distance(x1, x2, **kwargs).numpy(),
        R.pairwise_distance(x1.numpy(), x2.numpy(), **kwargs),
        rtol=1e-12,
    )


def test_pairwise_distance_adds_eps_to_the_difference_not_to_the_norm():
    # Equal vectors in D = 4: || 0 + eps ||_2 = eps * sqrt(4).
    x = torch.ones(3, 4, dtype=F64)
    np.testing.assert_allclose(losskit.pairwise_distance(x, x, eps=1e-3).numpy(), [2e-3] * 3)


def test_pairwise_distance_broadcasts_and_handles_one_dimensional_inputs_as_torch():
    g = _gen(3)
    x1, x2 = torch.randn(4, 3, generator=g, dtype=F64), torch.randn(3, generator=g, dtype=F64)
    for a, b in ((x1, x2), (x2, x1), (x2, x2 + 1.0)):
        ours, theirs = losskit.pairwise_distance(a, b), TF.pairwise_distance(a, b)
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs)
    with pytest.raises(ValueError, match=r"x1 of shape \(4, 3\) and x2 of shape \(2, 3\)"):
        losskit.pairwise_distance(x1, torch.randn(2, 3, dtype=F64))


# ---------------------------------------------------------------- kinks follow torch


def _kink_cases() -> list:
    """(ours, torch's, differentiable args, fixed args, kwargs), each with a hinge argument exactly 0
    (exact in binary floating point)."""
    t = functools.partial(torch.tensor, dtype=F64)
    one = torch.ones(3, dtype=F64)
    return [
        # margin ranking: -y (x1 - x2) + margin = 0 (torch's kernel: zero gradient)
        (losskit.margin_ranking_loss, TF.margin_ranking_loss, (one, one.clone()), (one,), {}),
        # hinge embedding: margin - x = 0 with y = -1 (torch's clamp_min: the gradient passes)
        (losskit.hinge_embedding_loss, TF.hinge_embedding_loss, (t([1.0, 0.5, 2.0]),), (-one,), {}),
        # multi margin: margin - x_y + x_i = 0
        (
            losskit.multi_margin_loss,
            TF.multi_margin_loss,
            (t([[1.0, 0.0, -2.0], [0.5, 1.5, 0.25]]),),
            (torch.tensor([0, 1]),),
            {},
        ),
        (
            losskit.multi_margin_loss,
            TF.multi_margin_loss,
            (t([[1.0, 0.0, -2.0]]),),
            (torch.tensor([0]),),
            {"p": 2},
        ),
        # multilabel margin: 1 - (x_j - x_i) = 0
        (
            losskit.multilabel_margin_loss,
            TF.multilabel_margin_loss,
            (t([[1.0, 0.0, 0.5, 0.25]]),),
            (torch.tensor([[0, -1, 0, 0]]),),
            {},
        ),
        # cosine embedding: cos - margin = 0 for orthogonal vectors and margin 0
        (
            losskit.cosine_embedding_loss,
            TF.cosine_embedding_loss,
            (t([[1.0, 0.0]]), t([[0.0, 2.0]])),
            (t([-1.0]),),
            {},
        ),
        # triplet: d(a, p) - d(a, n) + margin = 1 - 2 + 1 = 0 with eps = 0
        (
            losskit.triplet_margin_loss,
            TF.triplet_margin_loss,
            (t([[0.0]]), t([[1.0]]), t([[2.0]])),
            (),
            {"eps": 0.0},
        ),
    ]


@pytest.mark.parametrize("case", _kink_cases(), ids=lambda c: c[0].__name__)
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_gradient_at_the_kink_follows_torch(case, reduction):
    ours, theirs, diff, fixed, kwargs = case

    def call(fn):
        return lambda *d: fn(*d, *fixed, reduction=reduction, **kwargs)

    _assert_same_as_torch(call(ours), call(theirs), diff)


def test_triplet_swap_tie_splits_the_gradient_as_torch():
    # d(a, n) = d(p, n): torch.minimum gives half of the gradient to each branch.
    a = torch.tensor([[0.0, 0.0]], dtype=F64)
    p = torch.tensor([[2.0, 0.0]], dtype=F64)
    n = torch.tensor([[1.0, 3.0]], dtype=F64)
    _assert_same_as_torch(
        losskit.triplet_margin_loss, TF.triplet_margin_loss, (a, p, n), eps=0.0, swap=True
    )


# ---------------------------------------------------------------- closed forms from torch's docs


def test_multi_margin_and_multilabel_margin_docstring_examples():
    x = torch.tensor([[0.1, 0.2, 0.4, 0.8]], dtype=F64)
    # MultiMarginLoss: ((1 - (0.8 - 0.1)) + (1 - (0.8 - 0.2)) + (1 - (0.8 - 0.4))) / 4
    want = ((1 - 0.7) + (1 - 0.6) + (1 - 0.4)) / 4
    assert losskit.multi_margin_loss(x, torch.tensor([3])).item() == pytest.approx(want)
    # MultiLabelMarginLoss, targets {3, 0}: the two non-targets 1, 2 against each target
    want = ((1 - (0.1 - 0.2)) + (1 - (0.1 - 0.4)) + (1 - (0.8 - 0.2)) + (1 - (0.8 - 0.4))) / 4
    got = losskit.multilabel_margin_loss(x, torch.tensor([[3, 0, -1, 1]]))
    assert got.item() == pytest.approx(want)


def test_multi_margin_weight_is_taken_by_the_target_class():
    x = torch.tensor([[0.0, 0.5, 0.2]], dtype=F64)
    w = torch.tensor([1.0, 3.0, 10.0], dtype=F64)
    # target 1: w_1 * (max(0, 1 - 0.5 + 0) + max(0, 1 - 0.5 + 0.2)) / 3
    want = 3.0 * ((1 - 0.5) + (1 - 0.5 + 0.2)) / 3
    got = losskit.multi_margin_loss(x, torch.tensor([1]), weight=w)
    assert got.item() == pytest.approx(want)


def test_hinge_embedding_labels_other_than_plus_minus_one_get_both_terms():
    x = torch.tensor([0.25, 3.0, 0.25, -0.5], dtype=F64)
    y = torch.tensor([0.0, 0.0, 2.0, 1.0], dtype=F64)
    # y not ±1: max(0, 1 - x) + x ; y = 1: x
    want = [0.75 + 0.25, 0.0 + 3.0, 0.75 + 0.25, -0.5]
    got = losskit.hinge_embedding_loss(x, y, reduction="none")
    assert got.tolist() == pytest.approx(want)
    _assert_same_as_torch(
        losskit.hinge_embedding_loss, TF.hinge_embedding_loss, (x, y), reduction="none"
    )


def test_multilabel_counts_repeated_targets_twice_and_ignores_entries_after_padding():
    x = torch.tensor([[0.1, 0.2, 0.4, 0.8]], dtype=F64)
    once = losskit.multilabel_margin_loss(x, torch.tensor([[3, -1, 0, 1]]))
    twice = losskit.multilabel_margin_loss(x, torch.tensor([[3, 3, -1, 2]]))
    # target 3 against 0, 1, 2: (0.3 + 0.4 + 0.6) / 4
    assert once.item() == pytest.approx(1.3 / 4)
    assert twice.item() == pytest.approx(2.6 / 4)
    assert twice.item() == pytest.approx(
        TF.multilabel_margin_loss(x, torch.tensor([[3, 3, -1, 2]])).item()
    )


def test_multilabel_out_of_range_entry_after_the_padding_still_raises_unless_checks_are_off():
    x = torch.randn(1, 4, dtype=F64)
    bad = torch.tensor([[2, -1, 7, 0]])
    with pytest.raises(IndexError, match=r"Target 7 is out of bounds.*\[0, 4\) or -1"):
        losskit.multilabel_margin_loss(x, bad)
    with losskit.set_checks("shapes"):
        # On the CPU torch's op checks every entry itself (the error is reworded) ...
        with pytest.raises(IndexError, match=r"Target 7 is out of bounds"):
            losskit.multilabel_margin_loss(x, bad)
        # ... losskit's formula skips the check: the entry after -1 is never read, the loss is
        # that of the single target 2.
        with losskit.use_backend("formula"):
            got = losskit.multilabel_margin_loss(x, bad)
        want = R.multilabel_margin_loss(x.numpy(), np.array([[2, -1, 0, 0]]))
        np.testing.assert_allclose(got.item(), want)


@given(
    values=st.lists(st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]), min_size=12, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_multilabel_matches_torch_with_ties_and_exact_kinks(values, seed):
    # Scores on a 0.5 grid make many hinge arguments exactly 0 and many scores equal: the sorted
    # suffix-sum evaluation must still agree with torch's direct double loop, gradients included.
    x = torch.tensor(values, dtype=F64).view(3, 4)
    g = _gen(seed)
    rows = []
    for _ in range(3):
        row = torch.randperm(4, generator=g)
        k = int(torch.randint(0, 5, (1,), generator=g))
        if k < 4:
            row[k] = -1
        rows.append(row)
    target = torch.stack(rows)
    for reduction in ("none", "sum"):
        _assert_same_as_torch(
            lambda t, r=reduction: losskit.multilabel_margin_loss(t, target, reduction=r),
            lambda t, r=reduction: TF.multilabel_margin_loss(t, target, reduction=r),
            (x,),
        )


def test_multilabel_float32_keeps_torch_accuracy_with_many_classes_and_a_shared_offset():
    # Every score near 1000: the suffix sums must not cancel catastrophically. The oracle is torch
    # in float64 on the same float32-representable scores (so input rounding plays no part).
    g = _gen(8)
    x = (torch.randn(4, 300, generator=g, dtype=F64) + 1000.0).float()
    target = torch.stack([torch.randperm(300, generator=g) for _ in range(4)])
    target[:, 40] = -1
    exact = TF.multilabel_margin_loss(x.double(), target, reduction="none")
    ours = losskit.multilabel_margin_loss(x, target, reduction="none").double()
    torch.testing.assert_close(ours, exact, rtol=5e-7, atol=0.0)


# ---------------------------------------------------------------- empty batches and extremes


@pytest.mark.parametrize(
    ("fn", "target"),
    [
        (losskit.multi_margin_loss, torch.zeros(0, dtype=torch.long)),
        (losskit.multilabel_margin_loss, torch.zeros(0, 4, dtype=torch.long)),
    ],
    ids=["multi_margin", "multilabel_margin"],
)
def test_empty_batch_of_the_kernel_losses_gives_nan_mean_and_zero_sum(fn, target):
    # torch returns uninitialised memory here; we follow the library-wide convention.
    x = torch.randn(0, 4, dtype=F64, requires_grad=True)
    assert fn(x, target, reduction="none").shape == (0,)
    assert math.isnan(fn(x, target).item())
    total = fn(x, target, reduction="sum")
    assert total.item() == 0.0
    total.backward()
    assert x.grad.shape == (0, 4)


@pytest.mark.parametrize("dtype", [F64, torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_soft_margin_stays_finite_with_the_closed_form_gradient_at_extreme_scores(dtype):
    x = torch.tensor([1e4, -1e4, 1e4, -1e4, 50.0, 0.0], dtype=dtype, requires_grad=True)
    y = torch.tensor([1.0, 1.0, -1.0, -1.0, -1.0, 1.0], dtype=dtype)
    out = losskit.soft_margin_loss(x, y, reduction="mean")
    out.backward()
    xs, ys = x.detach().double().numpy(), y.double().numpy()
    np.testing.assert_allclose(out.item(), R.soft_margin_loss(xs, ys), rtol=1e-2)
    # d/dx softplus(-y x) / n = -y sigmoid(-y x) / n
    want = -ys * np.exp(-np.logaddexp(0.0, ys * xs)) / xs.size
    np.testing.assert_allclose(x.grad.double().numpy(), want, rtol=1e-2, atol=1e-6)


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(d, s) for d in (F64, torch.float32) for s in (0.0, 1e-7, 1e4)] + [(F64, 1e15)],
    ids=str,
)
def test_cosine_embedding_epsilon_matches_torch_for_zero_tiny_and_huge_vectors(dtype, scale):
    # The epsilon (float32(1e-12)) dominates |x1|^2 for the zero and tiny vectors.
    g = _gen(4)
    x1 = (torch.randn(4, 3, generator=g) * scale).to(dtype)
    x2 = torch.randn(4, 3, generator=g).to(dtype)
    y = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=dtype)
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == F64 else {"rtol": 1e-4, "atol": 1e-5}
    _assert_same_as_torch(
        losskit.cosine_embedding_loss,
        TF.cosine_embedding_loss,
        (x1, x2, y),
        margin=-0.1,
        reduction="none",
        **tol,
    )


# ---------------------------------------------------------------- shapes and Modules


def test_unbatched_inputs_give_scalar_losses_like_torch():
    x = torch.randn(5, generator=_gen(5), dtype=F64)
    calls = [
        ("multi_margin_loss", (x, torch.tensor(2))),
        ("multilabel_margin_loss", (x, torch.tensor([1, 4, -1, 0, 0]))),
        ("cosine_embedding_loss", (x, x.flip(0), torch.tensor(-1.0))),
        ("triplet_margin_loss", (x, x * 2, -x)),
    ]
    for name, args in calls:
        ours = getattr(losskit, name)(*args, reduction="none")
        theirs = getattr(TF, name)(*args, reduction="none")
        assert ours.shape == theirs.shape == (), name
        torch.testing.assert_close(ours, theirs)


def test_triplet_margin_accepts_extra_leading_batch_dimensions_like_torch():
    g = _gen(6)
    a, p, n = (torch.randn(2, 3, 4, generator=g, dtype=F64) for _ in range(3))
    _assert_same_as_torch(
        losskit.triplet_margin_loss, TF.triplet_margin_loss, (a, p, n), reduction="none"
    )


def test_shapes_that_torch_broadcasts_raise_here():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"target size \(3,\).*input size \(2, 3\)"):
        losskit.hinge_embedding_loss(x, torch.ones(3))
    a = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"positive size \(1, 3\)"):
        losskit.triplet_margin_loss(a, a[:1], a)


def test_triplet_with_distance_default_equals_triplet_margin_loss_and_module_keeps_distance():
    g = _gen(7)
    a, p, n = (torch.randn(6, 5, generator=g, dtype=F64) for _ in range(3))
    for swap in (False, True):
        torch.testing.assert_close(
            losskit.triplet_margin_with_distance_loss(a, p, n, swap=swap),
            TF.triplet_margin_loss(a, p, n, swap=swap),
        )
    dist = torch.nn.PairwiseDistance(p=1.0)
    crit = lnn.TripletMarginWithDistanceLoss(distance_function=dist, margin=0.5)
    assert crit.distance_function is dist
    assert lnn.TripletMarginWithDistanceLoss().distance_function is losskit.pairwise_distance
    theirs = torch.nn.TripletMarginWithDistanceLoss(distance_function=dist, margin=0.5)
    torch.testing.assert_close(crit(a, p, n), theirs(a, p, n))


def test_multi_margin_module_validates_early_and_keeps_weight_as_a_buffer():
    with pytest.raises(ValueError, match=r"only p == 1 and p == 2 supported, got p=3"):
        lnn.MultiMarginLoss(p=3)
    with pytest.raises(ValueError, match=r"weight must be a 1-D tensor"):
        lnn.MultiMarginLoss(weight=torch.ones(2, 2))
    crit = lnn.MultiMarginLoss(p=2, weight=torch.tensor([1.0, 2.0, 3.0]))
    assert set(crit.state_dict()) == {"weight"}
    crit = crit.to(F64)
    x = torch.randn(4, 3, dtype=F64)
    t = torch.tensor([0, 2, 1, 2])
    torch.testing.assert_close(
        crit(x, t), TF.multi_margin_loss(x, t, p=2, weight=torch.tensor([1.0, 2.0, 3.0], dtype=F64))
    )


def test_triplet_margin_constructors_reject_non_positive_margins_like_torch():
    for cls in (lnn.TripletMarginLoss, lnn.TripletMarginWithDistanceLoss):
        with pytest.raises(ValueError, match="margin must be greater than 0, got 0"):
            cls(margin=0)


def test_multilabel_margin_kinks_and_large_scores_match_torch():
    g = torch.Generator().manual_seed(0)
    # Integer scores put many pairs exactly at the hinge's kink (1 - x_j + x_i = 0), where
    # torch's gradient is 0; large float32 scores test the cancellation in the suffix sums.
    cases = [
        (torch.randint(-3, 4, (200, 6), generator=g).double(), 6, 1e-12),
        (torch.randn(8, 200, generator=g) * 1e5, 200, 1e-6),  # float32 against float64
    ]
    for x, c, tol in cases:
        t = torch.randint(0, c, x.shape, generator=g)
        t[torch.rand(x.shape, generator=g) < 0.4] = -1
        ours_x = x.clone().requires_grad_(True)
        ref_x = x.double().requires_grad_(True)
        ours = losskit.multilabel_margin_loss(ours_x, t, reduction="none")
        ref = torch.nn.functional.multilabel_margin_loss(ref_x, t, reduction="none")
        ours.sum().backward()
        ref.sum().backward()
        torch.testing.assert_close(ours.double(), ref.detach(), rtol=tol, atol=1e-12)
        torch.testing.assert_close(ours_x.grad.double(), ref_x.grad, rtol=tol, atol=1e-12)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_multi_margin_1d_input_with_a_one_element_target_is_a_batch_of_one_like_torch(reduction):
    x = torch.randn(5, generator=_gen(3), dtype=F64)
    ours_x, ref_x = _leaf(x), _leaf(x)
    ours = losskit.multi_margin_loss(ours_x, torch.tensor([2]), reduction=reduction)
    ref = TF.multi_margin_loss(ref_x, torch.tensor([2]), reduction=reduction)
    assert ours.shape == ref.shape
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(ours, ref.detach())
    torch.testing.assert_close(ours_x.grad, ref_x.grad)
