"""Spawning real gloo ranks for the distributed tests (CPU, loopback only, bounded in time).

``run_ranks(checks, world, tmp_path)`` starts ``world`` processes; each joins a gloo group through
a rendezvous file, runs every ``check(rank, world)`` of ``checks`` (module-level functions, so that
``spawn`` can pickle them) and tears the group down. A failed assertion in any rank fails the test
with that rank's traceback; a rank that hangs fails it after ``time_limit_s``.
"""

from __future__ import annotations

import datetime
import gc
import os
import sys
import time
from collections.abc import Callable, Sequence

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

Check = Callable[[int, int], None]


def _rank_main(rank: int, world: int, init_file: str, checks: Sequence[Check]) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        for check in checks:
            check(rank, world)
        dist.barrier()  # no rank tears down while another still talks to it
    finally:
        gc.collect()  # drop DDP reducers and autograd graphs that still hold the group
        dist.destroy_process_group()
    # Every check passed and the group is gone. Leave without interpreter finalisation: gloo's
    # worker threads can otherwise abort the process (SIGABRT, "terminate called without an
    # active exception") while C++ statics are destroyed, which a loaded CI machine hit 1 run in
    # ~20. A rank that fails raises above and never gets here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_ranks(checks: Sequence[Check], world: int, tmp_path, time_limit_s: float = 150) -> None:
    """Run ``checks`` on ``world`` gloo ranks; fail the test on an error or a hang."""
    ctx = mp.start_processes(
        _rank_main,
        args=(world, str(tmp_path / "rendezvous"), list(checks)),
        nprocs=world,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + time_limit_s
    while not ctx.join(timeout=2):  # raises ProcessRaisedException with the rank's traceback
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"{world} ranks did not finish within {time_limit_s} s (a rank hung)")


def collective_calls(loss_of: Callable[[], torch.Tensor]) -> tuple[list[str], list[str]]:
    """The ``all_gather`` / ``all_reduce`` calls made by ``loss_of()`` and by its backward."""
    calls: list[str] = []
    real = {name: getattr(dist, name) for name in ("all_gather", "all_reduce")}

    def counting(name: str) -> Callable[..., object]:
        def wrapper(*args, **kwargs):
            calls.append(name)
            return real[name](*args, **kwargs)

        return wrapper

    try:
        for name in real:
            setattr(dist, name, counting(name))
        loss = loss_of()
        forward, calls[:] = list(calls), []
        loss.backward()
        return forward, list(calls)
    finally:
        for name, fn in real.items():
            setattr(dist, name, fn)
