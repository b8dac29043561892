"""Distances, triplet miners and the triplet loss against brute-force loops over all (a, p, n).

Oracles: the NumPy reference (``losskit.reference``: loops over index triples, distances from row
differences) for indices and values; for gradients, autograd through an independent float64 torch
loop over every triplet (no Gram form, no masks, no chunking).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import losskit
from losskit import reference as R
from losskit.metric import (
    batch_all_triplets,
    batch_hard_triplets,
    pairwise_distance_matrix,
    semi_hard_triplets,
    triplet_loss,
)

F64 = torch.float64
METRICS = [
    ("euclidean", 2.0),
    ("squared_euclidean", 2.0),
    ("cosine", 2.0),
    ("lp", 1.0),
    ("lp", 3.0),
]


def _layouts(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return {
        "PxK": torch.arange(3).repeat_interleave(3),
        "one class": torch.zeros(7, dtype=torch.int64),
        "all distinct": torch.randperm(7, generator=g),
        "unbalanced": torch.tensor([4, 0, 4, 7, 0, 4, 9, 4, 7, 0]),  # 9 is a singleton
        "two classes": torch.tensor([1, 1, 1, 1, 1, 1, 0, 1]),
    }


LAYOUTS = list(_layouts().items())


def _x(n: int, d: int = 4, seed: int = 0, dtype=F64) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------- distances


@pytest.mark.parametrize(("metric", "p"), METRICS)
def test_distance_matrix_matches_reference(metric, p):
    x, y = _x(6, 5), _x(4, 5, seed=1)
    for other in (None, y):
        ours = pairwise_distance_matrix(x, other, metric=metric, p=p)
        ref = R.pairwise_distance_matrix(
            x.numpy(), None if other is None else other.numpy(), metric, p
        )
        np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10, atol=1e-12)
    ours32 = pairwise_distance_matrix(x.float(), metric=metric, p=p)
    np.testing.assert_allclose(
        ours32.double().numpy(),
        R.pairwise_distance_matrix(x.float().double().numpy(), None, metric, p),
        rtol=1e-4,
        atol=2e-4,
    )


@pytest.mark.parametrize(("metric", "p"), METRICS)
def test_distance_diagonal_is_exactly_zero_with_zero_gradient(metric, p):
    # Large norms: the Gram form's rounding noise on the diagonal would be ~1e-3 in float32.
    x = (_x(5, 8, dtype=torch.float32) * 100).requires_grad_()
    d = pairwise_distance_matrix(x, metric=metric, p=p)
    assert torch.all(d.diagonal() == 0)
    (g,) = torch.autograd.grad(d.diagonal().sum(), x)
    assert torch.all(g == 0)


@pytest.mark.parametrize(("metric", "p"), METRICS)
def test_distance_gradient_finite_at_zero_distance(metric, p):
    # Duplicate rows across x and y: zero distance off the diagonal, where sqrt' would be inf.
    base = _x(3, 4)
    x = torch.cat([base, base[:1]]).requires_grad_()
    y = torch.cat([base[1:], base[:1]]).requires_grad_()
    d = pairwise_distance_matrix(x, y, metric=metric, p=p)
    assert d[0, 2] == 0 and d[3, 2] == 0
    gx, gy = torch.autograd.grad(d.sum(), (x, y))
    assert torch.isfinite(gx).all() and torch.isfinite(gy).all()


@pytest.mark.parametrize(("metric", "p"), METRICS)
def test_distance_gradcheck(metric, p):
    x, y = _x(4, 3).requires_grad_(), _x(3, 3, seed=2).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b: pairwise_distance_matrix(a, b, metric=metric, p=p), (x, y)
    )
    assert torch.autograd.gradcheck(lambda a: pairwise_distance_matrix(a, metric=metric, p=p), (x,))


def test_distance_half_precision_returns_input_dtype():
    x = _x(5, 4).half()
    d = pairwise_distance_matrix(x)
    assert d.dtype == torch.float16
    ref = R.pairwise_distance_matrix(x.double().numpy())
    np.testing.assert_allclose(d.double().numpy(), ref, rtol=1e-2, atol=1e-2)


def test_distance_bad_arguments():
    x = _x(4, 3)
    with pytest.raises(ValueError, match=r"y must have x's feature size.*\(3,.*\(2,"):
        pairwise_distance_matrix(x, _x(2, 2))
    with pytest.raises(ValueError, match=r"metric must be one of.*'cos'"):
        pairwise_distance_matrix(x, metric="cos")
    with pytest.raises(ValueError, match=r"eps must be > 0"):
        pairwise_distance_matrix(x, eps=0.0)
    with pytest.raises(ValueError, match=r"x must be a 2-D"):
        pairwise_distance_matrix(x[0])


# ---------------------------------------------------------------- miners vs brute force


def _np_triplets(t) -> tuple[np.ndarray, ...]:
    return tuple(v.numpy() for v in t)


def _assert_same_triplets(ours, ref):
    for a, b in zip(_np_triplets(ours), ref, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("metric", "p"), METRICS)
@pytest.mark.parametrize(("layout", "labels"), LAYOUTS, ids=[n for n, _ in LAYOUTS])
def test_miners_match_brute_force(layout, labels, metric, p):
    x = _x(len(labels), 3, seed=3)
    xn, yn = x.numpy(), labels.numpy()
    _assert_same_triplets(
        batch_hard_triplets(x, labels, metric, p), R.batch_hard_triplets(xn, yn, metric, p)
    )
    for margin in (0.1, 1.0):
        _assert_same_triplets(
            semi_hard_triplets(x, labels, margin, metric, p),
            R.semi_hard_triplets(xn, yn, margin, metric, p),
        )
    for margin in (0.2, 1.5, None):
        _assert_same_triplets(
            batch_all_triplets(x, labels, margin, metric, p),
            R.batch_all_triplets(xn, yn, margin, metric, p),
        )


def test_miners_skip_anchors_without_positive_or_negative():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])  # anchor 2 has no positive
    t = batch_hard_triplets(_x(6), labels)
    assert t.anchor.tolist() == [0, 1, 3, 4, 5]
    assert batch_hard_triplets(_x(4), torch.zeros(4, dtype=torch.int64)).anchor.numel() == 0
    assert semi_hard_triplets(_x(4), torch.arange(4)).anchor.numel() == 0


def test_semi_hard_falls_back_to_the_hardest_negative():
    # 1-D points: anchor 0 at 0, its positive at 1; negatives at 0.5 (hard) and 3 (easy).
    x = torch.tensor([[0.0], [1.0], [0.5], [3.0]], dtype=F64)
    labels = torch.tensor([0, 0, 1, 2])
    t = semi_hard_triplets(x, labels, margin=0.5)
    # no negative in (1, 1.5): the hardest one (0.5) is used
    assert (t.anchor[0].item(), t.positive[0].item(), t.negative[0].item()) == (0, 1, 2)
    t = semi_hard_triplets(x, labels, margin=2.5)
    # 3 lies in (1, 3.5): the semi-hard negative wins over the harder one
    assert t.negative[0].item() == 3


def test_miners_chunk_over_pairs_like_a_single_pass(monkeypatch):
    # Force chunks of 3 rows: indices and losses must not depend on the chunking.
    labels = _layouts()["unbalanced"]
    x = _x(len(labels), 3, seed=5)
    full = batch_all_triplets(x, labels, 0.5)
    full_loss = triplet_loss(x, labels, 0.5, "batch_all")
    import losskit.metric.miners as miners

    monkeypatch.setattr(miners, "CHUNK_ELEMENTS", 3 * len(labels))
    chunked = batch_all_triplets(x, labels, 0.5)
    for a, b in zip(full, chunked, strict=True):
        assert torch.equal(a, b)
    torch.testing.assert_close(triplet_loss(x, labels, 0.5, "batch_all"), full_loss)


# ---------------------------------------------------------------- loss gradients: autograd loop


def _row_distance(a: torch.Tensor, b: torch.Tensor, metric: str, p: float) -> torch.Tensor:
    if metric == "euclidean":
        return torch.sqrt(((a - b) ** 2).sum())
    if metric == "squared_euclidean":
        return ((a - b) ** 2).sum()
    if metric == "cosine":
        return 1 - (a @ b) / (a.norm() * b.norm())
    return ((a - b).abs() ** p).sum() ** (1 / p)


def _brute_force_triplet_loss(x, labels, margin, mining, soft, metric, p, reduction):
    """Every (a, p, n) in a Python loop; mining decided on the values, losses through autograd."""
    y = labels.tolist()
    n = len(y)
    d = {(i, j): _row_distance(x[i], x[j], metric, p) for i in range(n) for j in range(n) if i != j}
    valid = [
        (a, q, m)
        for a, q, m in itertools.product(range(n), repeat=3)
        if q != a and y[q] == y[a] and y[m] != y[a]
    ]
    if mining == "batch_hard":
        chosen = []
        for a in range(n):
            mine = [(q, m) for aa, q, m in valid if aa == a]
            if mine:
                q = max((q for q, _ in mine), key=lambda q: d[a, q].item())
                m = min((m for _, m in mine), key=lambda m: d[a, m].item())
                chosen.append((a, q, m))
    elif mining == "semi_hard":
        chosen = []
        for a, q in sorted({(a, q) for a, q, _ in valid}):
            negs = [m for aa, qq, m in valid if (aa, qq) == (a, q)]
            dap = d[a, q].item()
            band = [m for m in negs if dap < d[a, m].item() < dap + margin]
            pick = band if band else negs
            chosen.append((a, q, min(pick, key=lambda m: d[a, m].item())))
    else:
        chosen = valid
    losses = []
    for a, q, m in chosen:
        v = d[a, q] - d[a, m] + margin
        if soft:
            losses.append(torch.nn.functional.softplus(v))
        elif mining != "batch_all" or v.item() > 0:
            losses.append(torch.relu(v))
    stacked = torch.stack(losses) if losses else x.sum()[None][:0]
    if reduction == "none":
        return stacked
    if reduction == "sum":
        return stacked.sum()
    return stacked.sum() / max(len(losses), 1)


@pytest.mark.parametrize("mining", ["batch_hard", "batch_all", "semi_hard"])
@pytest.mark.parametrize(("layout", "labels"), LAYOUTS, ids=[n for n, _ in LAYOUTS])
def test_loss_value_and_gradient_match_autograd_loop(layout, labels, mining):
    for (metric, p), soft, reduction in itertools.product(
        [("euclidean", 2.0), ("cosine", 2.0), ("lp", 3.0)], (False, True), ("mean", "sum", "none")
    ):
        x = _x(len(labels), 3, seed=7)
        margin = 0.1 if soft else 0.7
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        ours = triplet_loss(x1, labels, margin, mining, metric, p, soft, reduction)
        theirs = _brute_force_triplet_loss(x2, labels, margin, mining, soft, metric, p, reduction)
        msg = f"{metric} soft={soft} {reduction}"
        assert ours.shape == theirs.shape, msg
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12, msg=msg)
        up = torch.randn(ours.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
        (g1,) = torch.autograd.grad(ours, x1, up)
        if theirs.requires_grad:
            (g2,) = torch.autograd.grad(theirs, x2, up, allow_unused=True)
        else:
            g2 = None
        g2 = torch.zeros_like(x) if g2 is None else g2
        torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-11, msg=msg)


# ---------------------------------------------------------------- degenerate batches


@pytest.mark.parametrize("mining", ["batch_hard", "batch_all", "semi_hard"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "labels",
    [torch.zeros(5, dtype=torch.int64), torch.arange(5), torch.zeros(0, dtype=torch.int64)],
    ids=["one class", "all distinct", "empty"],
)
def test_no_valid_triplet_gives_zero_with_zero_gradient(labels, mining, reduction):
    x = _x(len(labels), 3, dtype=torch.float32).requires_grad_()
    out = triplet_loss(x, labels, mining=mining, reduction=reduction)
    assert out.requires_grad and out.grad_fn is not None  # still part of the graph
    if reduction == "none":
        assert out.shape == (0,)
    else:
        assert out.shape == () and out.item() == 0.0
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.all(g == 0)


def test_all_triplets_satisfied_gives_zero_mean_for_batch_all():
    # Two tight, far-apart clusters: every triplet satisfies the margin, no active triplet.
    x = torch.tensor([[0.0, 0.0], [0.0, 0.1], [10.0, 0.0], [10.0, 0.1]], requires_grad=True)
    out = triplet_loss(x, torch.tensor([0, 0, 1, 1]), margin=0.5, mining="batch_all")
    assert out.item() == 0.0
    out.backward()
    assert torch.all(x.grad == 0)


def test_duplicate_embeddings_give_finite_gradients():
    # Anchor and positive identical: zero distance inside the loss for every mining.
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [0.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    for mining in ("batch_hard", "batch_all", "semi_hard"):
        for metric in ("euclidean", "cosine", "lp"):
            x.grad = None
            triplet_loss(x, labels, margin=5.0, mining=mining, metric=metric).backward()
            assert torch.isfinite(x.grad).all(), (mining, metric)


def test_batch_all_reductions_relate_as_documented():
    labels = _layouts()["PxK"]
    x = _x(len(labels), 3, seed=11)
    none = triplet_loss(x, labels, 0.8, "batch_all", reduction="none")
    assert torch.all(none > 0)  # only the triplets with a positive loss
    torch.testing.assert_close(
        triplet_loss(x, labels, 0.8, "batch_all", reduction="sum"), none.sum()
    )
    torch.testing.assert_close(triplet_loss(x, labels, 0.8, "batch_all"), none.mean())


def test_batch_all_double_backward_hinge_exact_soft_raises():
    labels = _layouts()["PxK"]
    x = _x(len(labels), 3, seed=2)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=F64)
    hvps = []
    for loss in (
        lambda x: triplet_loss(x, labels, 0.9, "batch_all"),
        lambda x: _brute_force_triplet_loss(
            x, labels, 0.9, "batch_all", False, "euclidean", 2.0, "mean"
        ),
    ):
        xx = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(loss(xx), xx, create_graph=True)
        hvps.append(torch.autograd.grad((g * v).sum(), xx)[0])  # Hessian-vector product
    torch.testing.assert_close(hvps[0], hvps[1], rtol=1e-9, atol=1e-11)
    xx = x.clone().requires_grad_()
    out = triplet_loss(xx, labels, 0.1, "batch_all", soft_margin=True)
    with pytest.raises(RuntimeError, match=r"double backward.*soft_margin=True"):
        torch.autograd.grad(out, xx, create_graph=True)


def test_module_matches_functional_and_validates():
    labels = _layouts()["unbalanced"]
    x = _x(len(labels), 3)
    m = losskit.nn.TripletLoss(margin=0.3, mining="semi_hard", metric="cosine")
    torch.testing.assert_close(m(x, labels), triplet_loss(x, labels, 0.3, "semi_hard", "cosine"))
    assert "semi_hard" in repr(m)
    assert losskit.metric.TripletLoss is losskit.nn.TripletLoss
    with pytest.raises(ValueError, match="mining"):
        losskit.nn.TripletLoss(mining="hard")


# ---------------------------------------------------------------- memory: nothing of size B³


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an aten op returns.

    Runs under autograd, so the backward pass's ops are seen too.
    """

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0
        self.op = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.largest:
                self.largest, self.op = t.numel(), str(func)
        return out


def _largest_in_forward_backward(fn, x):
    with _LargestTensor() as probe:
        fn(x).backward()
    return probe.largest, probe.op


def test_memory_probe_catches_a_cubic_intermediate():
    # The probe must be able to fail: the textbook batch-all (B x B x B mask) is flagged.
    b = 32
    labels = torch.arange(8).repeat_interleave(4)
    x = _x(b, 8, dtype=torch.float32).requires_grad_()

    def naive(x):
        d = torch.cdist(x, x)
        same = labels[:, None] == labels[None, :]
        valid = same[:, :, None] & ~same[:, None, :]
        return torch.relu(d[:, :, None] - d[:, None, :] + 0.2)[valid].mean()

    largest, _ = _largest_in_forward_backward(naive, x)
    assert largest >= b**3


@pytest.mark.parametrize("mining", ["batch_all", "semi_hard", "batch_hard"])
def test_no_cubic_allocation_at_batch_2048(mining):
    b = 2048
    labels = torch.arange(512).repeat_interleave(4)  # P=512 x K=4: 12.5M valid triplets
    x = _x(b, 16, dtype=torch.float32).requires_grad_()
    largest, op = _largest_in_forward_backward(
        lambda x: triplet_loss(x, labels, margin=0.5, mining=mining), x
    )
    # Nothing near B³ = 8.6e9: the biggest tensors are B x B matrices (or a chunk of that size).
    assert largest <= b * b, f"{op} returned {largest} elements"


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_a_nan_or_inf_embedding_makes_the_loss_nan_instead_of_dropping_out(bad, reduction):
    # Mining compares distances and NaN fails every comparison: the loss must not quietly skip it.
    from losskit.metric import contrastive_loss, multi_similarity_loss

    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    x[3, 1] = bad
    losses = [
        lambda e, m=m: triplet_loss(e, labels, mining=m, reduction=reduction)
        for m in ("batch_hard", "batch_all", "semi_hard")
    ] + [
        lambda e: contrastive_loss(e, labels, reduction=reduction),
        lambda e: multi_similarity_loss(e, labels, reduction=reduction),
    ]
    for loss in losses:
        out = loss(x)
        assert out.numel() > 0 and torch.isnan(out).all(), out
        assert torch.isfinite(loss(x.nan_to_num(0.0, 0.0, 0.0))).all()
