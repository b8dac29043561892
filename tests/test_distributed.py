"""losskit.distributed with 2 and 3 real ranks (gloo on the CPU, loopback only, bounded in time)."""

from __future__ import annotations

import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import losskit
from losskit.distributed import all_gather_with_grad, vocab_parallel_cross_entropy

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")

TIME_LIMIT_S = 150


@pytest.mark.parametrize("world", [2, 3])
def test_distributed_equals_single_process(world, tmp_path):
    import _dist_workers

    ctx = mp.start_processes(
        _dist_workers.worker,
        args=(world, str(tmp_path / "rendezvous")),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + TIME_LIMIT_S
    while not ctx.join(timeout=2):  # raises ProcessRaisedException with the rank's traceback
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"{world} ranks did not finish within {TIME_LIMIT_S} s (a rank hung)")


def test_without_a_process_group_everything_falls_back_to_one_process():
    x = torch.randn(4, 3, requires_grad=True)
    assert all_gather_with_grad(x) is x
    logits = torch.randn(5, 7)
    t = torch.randint(0, 7, (5,))
    torch.testing.assert_close(
        vocab_parallel_cross_entropy(logits, t, label_smoothing=0.1),
        torch.nn.functional.cross_entropy(logits, t, label_smoothing=0.1),
    )


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match=r"target shape \(4,\) must equal.*\(5,\)"):
        vocab_parallel_cross_entropy(torch.randn(5, 7), torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="target must hold class indices"):
        vocab_parallel_cross_entropy(torch.randn(5, 7), torch.zeros(5))
    with pytest.raises(ValueError, match="0-D"):
        all_gather_with_grad(torch.tensor(1.0))
    assert losskit.distributed is not None
