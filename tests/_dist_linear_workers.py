"""Code run inside the spawned ranks of tests/test_distributed_linear.py (gloo, CPU, loopback only).

Every rank builds the same global data (float64, fixed seeds), takes its uneven slice of the LM
head, runs vocab_parallel_linear_cross_entropy on it and compares with the single-process
``torch.nn.functional.cross_entropy`` on the full logits; a failed assertion reaches the parent test.
"""

from __future__ import annotations

import torch
import torch.nn.functional as TF

from dist_harness import collective_calls
from losskit._vocab_parallel_linear import vocab_parallel_linear_cross_entropy

F64 = torch.float64
SHARDS = {2: [3, 8], 3: [6, 0, 5]}  # uneven shards of V = 11; with 3 ranks one holds no row
HIDDEN = 5


def _close(a, b, what):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m: f"{what}: {m}")


def _global_data(seed: int, batch: tuple[int, ...]):
    vocab = sum(SHARDS[2])
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, HIDDEN, generator=g, dtype=F64)
    w = torch.randn(vocab, HIDDEN, generator=g, dtype=F64) * 1.5
    b = torch.randn(vocab, generator=g, dtype=F64)
    target = torch.randint(0, vocab, batch, generator=g)
    return x, w, b, target


def _shard(rank: int, world: int) -> slice:
    sizes = SHARDS[world]
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def check_values_and_gradients(rank: int, world: int) -> None:
    """Every reduction, smoothing 0 / 0.2, with / without bias, ignored rows, several chunks."""
    rows = _shard(rank, world)
    x0, w0, b0, target = _global_data(5, (3, 3))  # 9 rows: chunks of 2 leave a partial last one
    target[0, 1] = -100
    target[2, 0] = -100
    for reduction in ("none", "mean", "sum"):
        for eps in (0.0, 0.2):
            for with_bias in (False, True):
                what = f"{reduction} eps={eps} bias={with_bias}"
                x = x0.clone().requires_grad_(True)
                w = w0[rows].clone().requires_grad_(True)
                b = b0[rows].clone().requires_grad_(True) if with_bias else None
                ours = vocab_parallel_linear_cross_entropy(
                    x, w, target, local_bias=b, label_smoothing=eps, reduction=reduction,
                    chunk_size=2,
                )  # fmt: skip

                xr = x0.clone().requires_grad_(True)
                wr = w0.clone().requires_grad_(True)
                br = b0.clone().requires_grad_(True) if with_bias else None
                logits = TF.linear(xr, wr, br)  # (3, 3, V)
                ref = TF.cross_entropy(
                    logits.permute(0, 2, 1), target, label_smoothing=eps, reduction=reduction
                )
                _close(ours, ref, f"value {what}")
                assert ours.dtype == F64 and ours.shape == ref.shape, what

                up = torch.randn(ref.shape, generator=torch.Generator().manual_seed(7), dtype=F64)
                ours.backward(up)
                ref.backward(up)
                # The replicated input gets the full gradient on every rank; the shard its rows.
                _close(x.grad, xr.grad, f"input grad {what}")
                _close(w.grad, wr.grad[rows], f"weight grad {what}")
                if with_bias:
                    _close(b.grad, br.grad[rows], f"bias grad {what}")


def check_default_chunk_and_shapes(rank: int, world: int) -> None:
    """Default chunk size, a 1-D input (scalar target), a 3-D batch, all rows ignored."""
    rows = _shard(rank, world)
    x0, w0, b0, target = _global_data(9, (2, 2, 3))
    ours = vocab_parallel_linear_cross_entropy(x0, w0[rows], target, local_bias=b0[rows])
    ref = TF.cross_entropy(TF.linear(x0, w0, b0).reshape(-1, w0.shape[0]), target.reshape(-1))
    _close(ours, ref, "default chunk, 3-D batch")

    x1 = x0[0, 0, 0].clone().requires_grad_(True)
    ours = vocab_parallel_linear_cross_entropy(x1, w0[rows], target[0, 0, 0], reduction="none")
    xr = x0[0, 0, 0].clone().requires_grad_(True)
    ref = TF.cross_entropy(TF.linear(xr, w0), target[0, 0, 0], reduction="none")
    assert ours.shape == (), ours.shape
    _close(ours, ref, "1-D input")
    ours.backward()
    ref.backward()
    _close(x1.grad, xr.grad, "1-D input grad")

    # All targets ignored: mean is NaN (as torch) with a zero gradient; sum is 0.
    x = x0.clone().requires_grad_(True)
    w = w0[rows].clone().requires_grad_(True)
    none_kept = torch.full_like(target, -100)
    mean = vocab_parallel_linear_cross_entropy(x, w, none_kept, chunk_size=4)
    assert torch.isnan(mean), mean
    mean.backward()
    assert not x.grad.any() and not w.grad.any()
    total = vocab_parallel_linear_cross_entropy(x0, w0[rows], none_kept, reduction="sum")
    assert total == 0.0, total


def check_gradcheck_input(rank: int, world: int) -> None:
    """torch.autograd.gradcheck of the autograd Function w.r.t. the replicated input.

    The weight shards differ in size across ranks, so a gradcheck over them would make a
    different number of (collective) evaluations per rank; the input is the same everywhere.
    """
    rows = _shard(rank, world)
    x0, w0, b0, target = _global_data(3, (4,))
    target[1] = -100
    for reduction in ("none", "mean"):
        x = x0[:, :3].clone().requires_grad_(True)
        w, b = w0[rows, :3], b0[rows]

        def fn(inp, reduction=reduction, w=w, b=b):
            return vocab_parallel_linear_cross_entropy(
                inp, w, target, local_bias=b, label_smoothing=0.1, reduction=reduction,
                chunk_size=3,
            )  # fmt: skip

        assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-8)


def check_out_of_range_target(rank: int, world: int) -> None:
    """The class-range check raises on every rank alike (the target is replicated): no hang."""
    rows = _shard(rank, world)
    x0, w0, _, _ = _global_data(1, (3,))
    vocab = w0.shape[0]
    for bad in (vocab, -1):
        try:
            vocab_parallel_linear_cross_entropy(x0, w0[rows], torch.tensor([0, bad, 1]))
        except IndexError as e:
            assert f"Target {bad} is out of bounds" in str(e), str(e)
            assert f"[0, {vocab})" in str(e), str(e)
        else:
            raise AssertionError(f"target {bad} did not raise on rank {rank}")
    # The group still works afterwards: a valid call completes on every rank.
    vocab_parallel_linear_cross_entropy(x0, w0[rows], torch.tensor([0, vocab - 1, 1]))


def check_collective_count(rank: int, world: int) -> None:
    """Forward: one all_gather and two all_reduce whatever the chunk count; backward: one."""
    rows = _shard(rank, world)
    x0, w0, b0, target = _global_data(2, (7,))
    x = x0.clone().requires_grad_(True)
    w = w0[rows].clone().requires_grad_(True)
    forward, backward = collective_calls(
        lambda: vocab_parallel_linear_cross_entropy(
            x, w, target, local_bias=b0[rows], label_smoothing=0.1, chunk_size=2
        )
    )
    assert forward == ["all_gather", "all_reduce", "all_reduce"], forward
    assert backward == ["all_reduce"], backward


def check_bfloat16(rank: int, world: int) -> None:
    """bfloat16 in, a float32 loss (as linear_cross_entropy): close to float64 on the rounded data."""
    rows = _shard(rank, world)
    x0, w0, b0, target = (
        t.to(torch.bfloat16) if t.is_floating_point() else t for t in _global_data(4, (6,))
    )
    x = x0.clone().requires_grad_(True)
    w = w0[rows].clone().requires_grad_(True)
    b = b0[rows].clone().requires_grad_(True)
    ours = vocab_parallel_linear_cross_entropy(
        x, w, target, local_bias=b, label_smoothing=0.1, chunk_size=4
    )
    assert ours.dtype == torch.float32
    xr, wr, br = (t.double().requires_grad_(True) for t in (x0, w0, b0))
    ref = TF.cross_entropy(TF.linear(xr, wr, br), target, label_smoothing=0.1)
    ours.backward()
    ref.backward()
    tol = {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(ours.double(), ref.detach(), **tol)
    torch.testing.assert_close(x.grad.double(), xr.grad, **tol)
    torch.testing.assert_close(w.grad.double(), wr.grad[rows], **tol)
    torch.testing.assert_close(b.grad.double(), br.grad[rows], **tol)


CHECKS = [
    check_values_and_gradients,
    check_collective_count,
    check_bfloat16,
    check_default_chunk_and_shapes,
    check_gradcheck_input,
    check_out_of_range_target,
]
