"""Retrieval metrics of N embeddings searched against themselves on the CPU: time and peak memory.

    python benchmarks/bench_retrieval_cpu.py [--n 50000 --d 128 --classes 1000 --runs 2]

Contenders, called as users call them: losskit's ``retrieval_metrics`` (exact, chunked over the
queries and the references, running top-k merge), and pytorch-metric-learning 2.9's
``AccuracyCalculator(k="max_bin_count")`` with its plain-torch ``CustomKNN(LpDistance(),
batch_size=1024)`` (chunked over the queries, a full row of N distances per query) where
importable. Both compute precision@1, R-precision and MAP@R with Euclidean distances; the script
prints both answers. The embeddings are noisy class centres (labels uniform over ``--classes``).

Time: one call per contender per run, the contenders interleaved (A B, A B); every run printed.
Memory: the peak resident set during the call minus the resident set before it, read from
``/proc/self/status`` (``VmHWM`` reset through ``/proc/self/clear_refs``), with glibc mapping
every allocation over 64 KiB on its own (``MALLOC_MMAP_THRESHOLD_``, set by re-executing this
script), so a freed buffer leaves the resident set at once. The embeddings themselves
(N × D float32) are allocated before and not counted.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and sys.platform == "linux":
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import torch

from losskit.metric import retrieval_metrics

METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field}")


def measured(fn):
    """``(result, seconds, extra peak bytes)`` of one call."""
    gc.collect()
    base = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    return out, seconds, _status("VmHWM") - base


def contenders(x: torch.Tensor, y: torch.Tensor) -> dict:
    out = {"losskit retrieval_metrics": lambda: retrieval_metrics(x, y)}
    try:
        from pytorch_metric_learning.distances import LpDistance
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
        from pytorch_metric_learning.utils.inference import CustomKNN

        calc = AccuracyCalculator(
            include=METRICS,
            k="max_bin_count",
            knn_func=CustomKNN(LpDistance(normalize_embeddings=False), batch_size=1024),
            device=torch.device("cpu"),
        )
        out["PML AccuracyCalculator + CustomKNN"] = lambda: calc.get_accuracy(x, y)
    except Exception as e:  # optional peer
        print(f"pytorch-metric-learning: not importable ({type(e).__name__})")
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--no-peer", action="store_true", help="losskit only")
    a = p.parse_args()
    g = torch.Generator().manual_seed(0)
    y = torch.randint(a.classes, (a.n,), generator=g)
    centres = torch.randn(a.classes, a.d, generator=g)
    x = centres[y] + 1.5 * torch.randn(a.n, a.d, generator=g)
    fns = contenders(x, y)
    if a.no_peer:
        fns = dict(list(fns.items())[:1])
    full_gib = a.n * a.n * 4 / 2**30
    print(
        f"N={a.n} queries = references, D={a.d} float32, {a.classes} classes (max R = "
        f"{int(torch.bincount(y).max()) - 1}); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; the N×N float32 matrix would be {full_gib:.1f} GiB"
    )
    for run in range(a.runs):
        print(f"\nrun {run + 1}")
        print("| contender | seconds | extra peak MiB | P@1 | R-precision | MAP@R |")
        print("|---|---|---|---|---|---|")
        for name, fn in fns.items():
            out, seconds, extra = measured(fn)
            values = " | ".join(f"{out[m]:.6f}" for m in METRICS)
            print(f"| {name} | {seconds:.1f} | {extra / 2**20:.0f} | {values} |", flush=True)


if __name__ == "__main__":
    main()
