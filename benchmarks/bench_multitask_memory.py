"""Peak extra memory of the gradient aggregators' backward: T = 8 tasks, a 10M-parameter trunk (CPU).

Each measurement runs in a fresh Python process (so the process's peak resident memory belongs to
the call being measured) with ``MALLOC_MMAP_THRESHOLD_=65536``: every buffer above 64 KiB is its
own mmap, returned to the OS when freed, so the resident set follows the live tensors. The peak is
``ru_maxrss`` after the call minus the resident memory just before it (model, activations and the
autograd graph are already there), in units of one trunk gradient (4 bytes × trunk parameters).
The ``.grad`` the call leaves on the trunk counts (1 unit): ``loss.backward()`` of the summed
losses, the plain baseline, needs ~1 unit.

Methods are run interleaved (A B C … A B C), two rounds, and both rounds are printed. The peak of
a deterministic sequence of allocations barely depends on the load, but the machine is shared and
loaded (timings printed next to it are not comparable across runs).

    python benchmarks/bench_multitask_memory.py            # prints a Markdown table
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

TASKS = 8
WIDTH = 1580  # 4 layers of 1580 × 1580 (+ bias) ≈ 10.0M parameters
BATCH = 16

METHODS = {
    "plain sum().backward()": None,
    "UPGrad (max_gradients=2)": "UPGrad()",
    "MGDA (max_gradients=2)": "MGDA()",
    "PCGrad (max_gradients=2)": "PCGrad()",
    "MGDA (max_gradients=None: keep T)": "MGDA(max_gradients=None)",
    "GradDrop (parameters: keeps T)": "GradDrop()",
}

CHILD = r"""
import json, resource, sys, time
import torch
from torch import nn
from losskit.multitask.aggregators import *

torch.set_num_threads(1)
T, WIDTH, BATCH = {tasks}, {width}, {batch}

def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

torch.manual_seed(0)
trunk = nn.Sequential(*[nn.Linear(WIDTH, WIDTH) for _ in range(4)])
heads = nn.ModuleList(nn.Linear(WIDTH, 1) for _ in range(T))
n_trunk = sum(p.numel() for p in trunk.parameters())
x = torch.randn(BATCH, WIDTH)
ys = torch.randn(T, BATCH)
h = torch.tanh(trunk(x))
losses = [((heads[t](h).squeeze(1) - ys[t]) ** 2).mean() for t in range(T)]
before = rss_bytes()
peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.perf_counter()
method = {method!r}
if method is None:
    sum(losses).backward()
else:
    eval(method).backward(losses, trunk.parameters())
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
unit = 4 * n_trunk
print(json.dumps({{
    "n_trunk": n_trunk,
    "extra_units": (peak - before) / unit,
    "earlier_peak_above_start_units": (peak_before - before) / unit,
    "seconds": seconds,
}}))
"""


def measure(method: str | None) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
    code = CHILD.format(tasks=TASKS, width=WIDTH, batch=BATCH, method=method)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    rounds = {name: [] for name in METHODS}
    started = time.perf_counter()
    for _ in range(2):
        for name, method in METHODS.items():  # interleaved: A B C … then again
            rounds[name].append(measure(method))
    n = rounds["plain sum().backward()"][0]["n_trunk"]
    print(
        f"T = {TASKS} tasks, trunk of {n / 1e6:.2f}M parameters (one trunk gradient = "
        f"{4 * n / 2**20:.1f} MiB), batch {BATCH}, CPU, 1 thread; machine shared and loaded "
        f"(total {time.perf_counter() - started:.0f} s)\n"
    )
    print("| method | peak extra, run 1 | run 2 | time run 1 / run 2 (s, loaded) |")
    print("|---|---|---|---|")
    for name, (a, b) in rounds.items():
        print(
            f"| {name} | {a['extra_units']:.2f} | {b['extra_units']:.2f} | "
            f"{a['seconds']:.2f} / {b['seconds']:.2f} |"
        )
    worst = max(r["earlier_peak_above_start_units"] for rs in rounds.values() for r in rs)
    print(
        f"\n(peak extra in trunk gradients; the process's earlier peak was at most {worst:.2f} "
        "units above the starting point, so it does not mask the call's peak)"
    )


if __name__ == "__main__":
    main()
