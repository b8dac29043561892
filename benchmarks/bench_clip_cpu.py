"""CLIP loss on CPU, forward + backward: the block-wise ``chunk_size`` path against the plain one.

``losskit.contrastive.clip_loss(img, txt, scale, chunk_size=c)`` never holds the ``B × B``
similarity matrix (it keeps the row and column log-sum-exp and recomputes ``c × B`` blocks in
its backward); ``chunk_size=None`` is the plain autograd path over the whole matrix. open_clip's
``ClipLoss`` (loaded from its ``loss.py``; its package imports torchvision) runs alongside when
installed.

Everything runs in one process, interleaved (A B C A B C ...), through the public API exactly as
a user calls it. Before timing, the script checks that the paths agree (value and gradients).
Peak extra memory of one call is the rise of the process's peak resident set (``VmHWM``, reset
through ``/proc/self/clear_refs``) over the resident set just before it, with the inputs
allocated and their gradients not: it includes the gradients themselves (``2 × B × D`` floats).

Usage: ``python benchmarks/bench_clip_cpu.py [--batch 16384] [--dim 512] [--chunk 256]
[--repeats 2]``; the table is printed and appended to ``benchmarks/results/clip_cpu.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from losskit.contrastive import clip_loss

HERE = Path(__file__).resolve().parent


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _release_free_heap() -> None:
    with contextlib.suppress(OSError):  # glibc only: give freed heap pages back to the OS
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _open_clip_loss():
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "loss.py"
    module_spec = importlib.util.spec_from_file_location("_open_clip_loss", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.ClipLoss()


def implementations(chunk: int) -> dict:
    impls = {
        f"losskit chunk_size={chunk}": lambda a, b, s: clip_loss(a, b, s, chunk_size=chunk),
        "losskit plain": lambda a, b, s: clip_loss(a, b, s),
    }
    oc = _open_clip_loss()
    if oc is not None:
        impls["open_clip ClipLoss"] = oc
    return impls


def inputs(batch: int, dim: int, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(batch, dim, generator=g), dim=1).to(dtype)
    txt = F.normalize(torch.randn(batch, dim, generator=g), dim=1).to(dtype)
    return img, txt, torch.tensor(1 / 0.07, dtype=dtype)


def check_agreement(impls: dict, batch: int, dim: int) -> str:
    img, txt, s = inputs(batch, dim, torch.float64)
    results = []
    for fn in impls.values():
        a, b, sc = (t.clone().requires_grad_(True) for t in (img, txt, s))
        loss = fn(a, b, sc)
        loss.backward()
        results.append((loss.item(), a.grad, b.grad, sc.grad))
    ref = results[0]
    worst = max(
        max(
            abs(r[0] - ref[0]),
            *(float((x - y).abs().max()) for x, y in zip(r[1:], ref[1:], strict=True)),
        )
        for r in results[1:]
    )
    return f"agreement at B={batch} (float64): largest difference in value or gradient {worst:.1e}"


def measure(fn, img, txt, s) -> tuple[float, float, float]:
    """(wall seconds, process CPU seconds, peak extra MiB) of one forward + backward."""
    for t in (img, txt, s):
        t.grad = None
    _release_free_heap()
    rss = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set to the current one
    t0, c0 = time.perf_counter(), time.process_time()
    fn(img, txt, s).backward()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return elapsed, cpu, (_status_kib("VmHWM") - rss) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16384)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "clip_cpu.md")
    args = parser.parse_args()

    load_before = os.getloadavg()
    impls = implementations(args.chunk)
    print(check_agreement(impls, 512, 64), flush=True)
    img, txt, s = (t.requires_grad_(True) for t in inputs(args.batch, args.dim))
    for fn in impls.values():  # warm-up at a small size: thread pools, lazy initialisation
        fn(img[:256], txt[:256], s).backward()
    times: dict = {name: [] for name in impls}
    cpus: dict = {name: [] for name in impls}
    peaks: dict = {name: [] for name in impls}
    for r in range(args.repeats):
        for name, fn in impls.items():
            sec, cpu, mib = measure(fn, img, txt, s)
            times[name].append(sec)
            cpus[name].append(cpu)
            peaks[name].append(mib)
            print(
                f"round {r}: {name:24s} {sec:8.2f} s (CPU {cpu:7.2f} s)  peak extra {mib:7.1f} MiB",
                flush=True,
            )

    load_after = os.getloadavg()
    matrix_mib = args.batch**2 * 4 / 2**20
    base = statistics.median(times["losskit plain"])
    cpu_base = statistics.median(cpus["losskit plain"])
    lines = [
        f"## clip_loss forward + backward, B = {args.batch}, D = {args.dim}, float32, CPU",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; the B × B float32 matrix is "
        f"{matrix_mib:.0f} MiB. Interleaved rounds: {args.repeats}; {os.cpu_count()} cores, 1-minute "
        f"load average {load_before[0]:.2f} before and {load_after[0]:.2f} after (this run included).",
        "",
        "| implementation | wall time per round (s) | vs plain | process CPU time (s) | vs plain "
        "| peak extra memory (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for name in impls:
        t = ", ".join(f"{x:.2f}" for x in times[name])
        ratio = statistics.median(times[name]) / base
        c = ", ".join(f"{x:.1f}" for x in cpus[name])
        cpu_ratio = statistics.median(cpus[name]) / cpu_base
        p = ", ".join(f"{x:.0f}" for x in peaks[name])
        lines.append(f"| {name} | {t} | {ratio:.2f}× | {c} | {cpu_ratio:.2f}× | {p} |")
    table = "\n".join(lines) + "\n"
    print()
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
