"""vocab_parallel_linear_cross_entropy with 2 and 3 real ranks (gloo on the CPU, loopback only),
and its single-process fallback and argument checks without a process group."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as TF

from dist_harness import run_ranks
from losskit._vocab_parallel_linear import vocab_parallel_linear_cross_entropy

F64 = torch.float64


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
@pytest.mark.parametrize("world", [2, 3])
def test_vocab_parallel_linear_equals_single_process(world, tmp_path):
    import _dist_linear_workers

    run_ranks(_dist_linear_workers.CHECKS, world, tmp_path)


def _data(seed=0, batch=(2, 3), hidden=4, vocab=7):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, hidden, generator=g, dtype=F64)
    w = torch.randn(vocab, hidden, generator=g, dtype=F64)
    b = torch.randn(vocab, generator=g, dtype=F64)
    t = torch.randint(0, vocab, batch, generator=g)
    return x, w, b, t


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("with_bias", [False, True])
def test_without_a_group_it_is_cross_entropy_on_the_full_logits(reduction, eps, with_bias):
    x0, w0, b0, t = _data()
    t[1, 2] = -100
    leaves = [x0.clone().requires_grad_(True), w0.clone().requires_grad_(True)]
    refs = [x0.clone().requires_grad_(True), w0.clone().requires_grad_(True)]
    if with_bias:
        leaves.append(b0.clone().requires_grad_(True))
        refs.append(b0.clone().requires_grad_(True))
    bias, ref_bias = (leaves[2], refs[2]) if with_bias else (None, None)
    ours = vocab_parallel_linear_cross_entropy(
        leaves[0], leaves[1], t, local_bias=bias, label_smoothing=eps, reduction=reduction,
        chunk_size=4,
    )  # fmt: skip
    ref = TF.cross_entropy(
        TF.linear(refs[0], refs[1], ref_bias).permute(0, 2, 1), t, label_smoothing=eps,
        reduction=reduction,
    )  # fmt: skip
    assert ours.shape == ref.shape and ours.dtype == F64
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    up = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    ours.backward(up)
    ref.backward(up)
    for a, r in zip(leaves, refs, strict=True):
        torch.testing.assert_close(a.grad, r.grad, rtol=1e-10, atol=1e-12)


def test_without_a_group_gradcheck():
    x0, w0, b0, t = _data(seed=3, batch=(3,), hidden=3, vocab=5)
    t[0] = -100
    args = (x0.requires_grad_(True), w0.requires_grad_(True), b0.requires_grad_(True))
    for reduction in ("none", "mean", "sum"):

        def fn(x, w, b, reduction=reduction):
            return vocab_parallel_linear_cross_entropy(
                x, w, t, local_bias=b, label_smoothing=0.1, reduction=reduction, chunk_size=2
            )

        assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-8)


def test_all_ignored_mean_is_nan_without_a_group():
    x, w, _, t = _data()
    out = vocab_parallel_linear_cross_entropy(x, w, torch.full_like(t, -100))
    assert torch.isnan(out)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"input": torch.zeros(2, 4, dtype=torch.long)}, TypeError, "input must be a floating"),
        ({"input": torch.tensor(1.0)}, ValueError, "input must be .*0-D"),
        ({"local_weight": [[1.0]]}, TypeError, "local_weight must be a torch.Tensor, got list"),
        (
            {"local_weight": torch.zeros(7, 3)},
            ValueError,
            r"local_weight must be \(V_r, 4\) for input of shape \(2, 4\), got shape \(7, 3\)",
        ),
        (
            {"local_weight": torch.zeros(7)},
            ValueError,
            r"local_weight must be \(V_r, 4\).*got shape \(7,\)",
        ),
        (
            {"local_weight": torch.zeros(7, 4, dtype=F64)},
            TypeError,
            "local_weight has dtype torch.float64 but input has torch.float32",
        ),
        (
            {"local_bias": torch.zeros(6)},
            ValueError,
            r"local_bias must have shape \(7,\).*got \(6,\)",
        ),
        (
            {"local_bias": torch.zeros(7, dtype=torch.long)},
            TypeError,
            "local_bias must be a floating",
        ),
        (
            {"target": torch.zeros(2, dtype=torch.float32)},
            TypeError,
            "target must be an integer tensor",
        ),
        (
            {"target": torch.zeros(3, dtype=torch.long)},
            ValueError,
            r"target must have shape \(2,\).*got \(3,\)",
        ),
        ({"reduction": "avg"}, ValueError, "'avg' is not a valid value for reduction"),
        ({"ignore_index": 1.5}, TypeError, "ignore_index must be an int, got float"),
        ({"label_smoothing": 1.5}, ValueError, r"label_smoothing must be in \[0, 1\], got 1.5"),
        ({"chunk_size": 0}, ValueError, "chunk_size must be None or an int >= 1, got 0"),
        ({"chunk_size": 2.0}, TypeError, "chunk_size must be an int, got float"),
        ({"target": torch.tensor([0, 7])}, IndexError, r"Target 7 is out of bounds.*\[0, 7\)"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, error, match):
    args = {
        "input": torch.randn(2, 4),
        "local_weight": torch.randn(7, 4),
        "target": torch.tensor([0, 6]),
    }
    args.update(kwargs)
    positional = [args.pop(k) for k in ("input", "local_weight", "target")]
    with pytest.raises(error, match=match):
        vocab_parallel_linear_cross_entropy(*positional, **args)
