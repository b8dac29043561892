"""Language-model head on the CPU: hidden states -> loss, forward + backward, time and memory.

    python benchmarks/bench_lm_head_cpu.py [--n 4096 --h 512 --v 32768 --runs 2 --iters 3]

Contenders, called as users call them: losskit's ``linear_cross_entropy``; torch eager
(``F.cross_entropy(F.linear(x, w), t)``); torch 2.13's ``F.linear_cross_entropy`` without options
(its reference path) and with ``LinearCrossEntropyOptions()`` (chunked); cut-cross-entropy and
Liger-Kernel where importable. 10% of the targets are ignored.

Time: the median of ``--iters`` forward + backward steps per contender, the contenders
interleaved (A B C D, A B C D, ...), the whole repeated ``--runs`` times; every run is printed.
Both the wall time and the process's CPU time (user + system, all threads) are reported: on a
shared, loaded machine the wall time mostly measures the neighbours, the CPU time the work.
Memory: the peak resident set of one step minus the resident set before it (``.grad`` released
first), read from ``/proc/self/status`` (``VmHWM`` reset through ``/proc/self/clear_refs``).
glibc is told to map every allocation over 64 KiB on its own (``MALLOC_MMAP_THRESHOLD_``, set
by re-executing this script), so a freed buffer leaves the resident set at once and the peak is
the peak of live bytes. The gradients themselves (``x.grad``, ``w.grad``) are part of the extra
memory of every contender; the column "beyond grads" subtracts them.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and sys.platform == "linux":
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import torch
import torch.nn.functional as F

import losskit


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def contenders() -> dict:
    out = {
        "losskit": lambda x, w, t: losskit.linear_cross_entropy(x, w, t),
        "torch eager (matmul + CE)": lambda x, w, t: F.cross_entropy(F.linear(x, w), t),
    }
    if hasattr(F, "linear_cross_entropy"):
        opts = torch.nn.LinearCrossEntropyOptions
        out["torch F.linear_cross_entropy (default)"] = lambda x, w, t: F.linear_cross_entropy(
            x, w, t
        )
        out["torch F.linear_cross_entropy (chunked)"] = lambda x, w, t: F.linear_cross_entropy(
            x, w, t, options=opts()
        )
    try:
        from cut_cross_entropy import linear_cross_entropy as cce

        out["cut-cross-entropy"] = lambda x, w, t: cce(x, w, t, impl="torch_compile")
    except Exception:
        print("cut-cross-entropy: not importable")
    try:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy as lfl

        out["Liger-Kernel"] = lambda x, w, t: lfl(x, w, t)
    except Exception:
        print("Liger-Kernel: not importable (and CUDA only)")
    return out


def step(fn, x, w, t) -> None:
    x.grad = w.grad = None
    fn(x, w, t).backward()


def memory(fn, x, w, t) -> int:
    x.grad = w.grad = None
    gc.collect()
    base = _rss()
    _reset_hwm()
    fn(x, w, t).backward()
    peak = _hwm()
    x.grad = w.grad = None
    return peak - base


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--h", type=int, default=512)
    p.add_argument("--v", type=int, default=32768)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--ignored", type=float, default=0.1)
    a = p.parse_args()
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(a.n, a.h, generator=g) / a.h**0.5).requires_grad_()
    w = torch.randn(a.v, a.h, generator=g).requires_grad_()
    t = torch.randint(0, a.v, (a.n,), generator=g)
    t[torch.rand(a.n, generator=g) < a.ignored] = -100
    grads_mb = (x.numel() + w.numel()) * 4 / 2**20
    fns = contenders()
    print(
        f"N={a.n} H={a.h} V={a.v} float32, {a.ignored:.0%} ignored; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; gradients x+w = {grads_mb:.0f} MiB"
    )
    for fn in fns.values():  # warm-up
        step(fn, x, w, t)
    for run in range(a.runs):
        times: dict[str, list[float]] = {k: [] for k in fns}
        cpu: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(a.iters):
            for name, fn in fns.items():
                t0, c0 = time.perf_counter(), time.process_time()
                step(fn, x, w, t)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
        mem = {name: memory(fn, x, w, t) / 2**20 for name, fn in fns.items()}
        eager = statistics.median(times["torch eager (matmul + CE)"])
        eager_cpu = statistics.median(cpu["torch eager (matmul + CE)"])
        eager_mem = mem["torch eager (matmul + CE)"] - grads_mb
        print(f"\nrun {run + 1} (load average {os.getloadavg()[0]:.1f})")
        print(
            "| contender | wall s | vs eager | CPU s | vs eager | extra MiB | "
            "beyond grads MiB | vs eager |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for name in fns:
            med, med_cpu = statistics.median(times[name]), statistics.median(cpu[name])
            beyond = mem[name] - grads_mb
            print(
                f"| {name} | {med:.2f} | {med / eager:.2f}x | {med_cpu:.2f} | "
                f"{med_cpu / eager_cpu:.2f}x | {mem[name]:.0f} | {beyond:.0f} | "
                f"{beyond / eager_mem:.3f} |"
            )


if __name__ == "__main__":
    main()
