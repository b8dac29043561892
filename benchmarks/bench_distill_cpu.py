"""Linear distillation on CPU: losskit's blocked loss vs materialising both models' logits.

``losskit.lm.linear_distillation_loss(hs, Ws, ht, Wt, divergence=D)`` against the eager
computation a user would write: both models' ``N x V`` logits (the teacher's under
``no_grad``), their log-softmax and the divergence (``F.kl_div`` for forward KL), forward +
backward into the student's hidden states ``hs`` and output embedding ``Ws``. Defaults:
float32, N = 4096 positions, student H = 512, teacher H = 768, V = 32768.

Time: both implementations in one process, interleaved (A B A B ...), the median of the
repeats. Extra memory: each (divergence, implementation) in its own fresh process; the rise of
the peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) during one forward +
backward over the resident set just before it (inputs allocated, torch and losskit imported, no
gradients yet), so the gradients of ``hs`` and ``Ws`` count on both sides.

``--profile``: where the time of one losskit forward + backward goes, by operator
(``torch.profiler``): the matrix products (``mm`` student/teacher logits and the input
gradient, ``addmm`` the weight gradient) against the elementwise work.

Usage: ``python benchmarks/bench_distill_cpu.py [--n 4096] [--h 512] [--v 32768] [--repeats 3]
[--divergences kl jsd ...] [--profile]``; prints a Markdown table. The machine may be shared:
run it under ``flock /tmp/cpu.lock`` and quote several runs.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from _peak_memory import peak_rise_mib

import losskit.lm

DIVERGENCES = ("kl", "reverse_kl", "jsd", "tvd")
IMPLS = ("losskit", "materialised")
TEACHER_H = 768
BETA = 0.5


def make_inputs(n: int, h: int, v: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h, generator=g).requires_grad_()
    w = (torch.randn(v, h, generator=g) * h**-0.5).requires_grad_()
    ht = torch.randn(n, TEACHER_H, generator=g)
    wt = torch.randn(v, TEACHER_H, generator=g) * TEACHER_H**-0.5
    return x, w, ht, wt


def materialised(x, w, ht, wt, divergence: str) -> torch.Tensor:
    """The eager loss: both logits, log-softmax, the divergence, mean over positions."""
    with torch.no_grad():
        lt = torch.log_softmax(ht @ wt.T, dim=-1)
    ls = torch.log_softmax(x @ w.T, dim=-1)
    if divergence == "kl":
        return F.kl_div(ls, lt, log_target=True, reduction="batchmean")
    if divergence == "reverse_kl":
        return F.kl_div(lt, ls, log_target=True, reduction="batchmean")
    if divergence == "tvd":
        return 0.5 * (ls.exp() - lt.exp()).abs().sum(-1).mean()
    lm = torch.logaddexp(lt + math.log(BETA), ls + math.log1p(-BETA))  # TRL's generalised JSD
    kl_t = F.kl_div(lm, lt, log_target=True, reduction="batchmean")
    kl_s = F.kl_div(lm, ls, log_target=True, reduction="batchmean")
    return BETA * kl_t + (1 - BETA) * kl_s


def step(impl: str, inputs, divergence: str) -> None:
    """One forward + backward, called exactly as a user would."""
    x, w, ht, wt = inputs
    if impl == "losskit":
        loss = losskit.lm.linear_distillation_loss(x, w, ht, wt, divergence=divergence, beta=BETA)
    else:
        loss = materialised(x, w, ht, wt, divergence)
    loss.backward()


def worker(impl: str, divergence: str, n: int, h: int, v: int) -> None:
    inputs = make_inputs(n, h, v)
    extra = peak_rise_mib(lambda: step(impl, inputs, divergence))
    print(json.dumps({"extra_mib": extra}))


def extra_memory(impl: str, divergence: str, n: int, h: int, v: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", impl, divergence, "--n", str(n), "--h", str(h),
         "--v", str(v)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_mib"]


def timings(divergence: str, n: int, h: int, v: int, repeats: int) -> dict[str, float]:
    inputs = make_inputs(n, h, v)
    times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    for _ in range(repeats):
        for impl in IMPLS:  # interleaved: A B A B ...
            for t in inputs:
                t.grad = None
            start = time.perf_counter()
            step(impl, inputs, divergence)
            times[impl].append(time.perf_counter() - start)
    return {impl: statistics.median(ts) for impl, ts in times.items()}


def check_agreement(divergences, n: int = 256, h: int = 64, v: int = 2048) -> None:
    """Both implementations give the same gradients before anything is timed."""
    for divergence in divergences:
        grads = []
        for impl in IMPLS:
            inputs = make_inputs(n, h, v)
            step(impl, inputs, divergence)
            grads.append([inputs[0].grad, inputs[1].grad])
        for a, b in zip(*grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def profile(divergence: str, n: int, h: int, v: int) -> None:
    """Self CPU time of one losskit forward + backward, by operator."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    inputs = make_inputs(n, h, v)
    step("losskit", inputs, divergence)  # warm up
    for t in inputs:
        t.grad = None
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step("losskit", inputs, divergence)
    print(f"\nlosskit {divergence}, one forward + backward, by operator (self CPU time):\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--h", type=int, default=512)
    p.add_argument("--v", type=int, default=32768)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--divergences", nargs="+", default=["kl"], choices=DIVERGENCES)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--worker", nargs=2, metavar=("IMPL", "DIVERGENCE"))
    args = p.parse_args()
    if args.worker:
        worker(*args.worker, args.n, args.h, args.v)
        return
    if args.profile:
        for d in args.divergences:
            profile(d, args.n, args.h, args.v)
        return
    check_agreement(args.divergences)
    print(f"N={args.n} H={args.h} (teacher {TEACHER_H}) V={args.v} float32, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats} "
          "interleaved repeats\n")  # fmt: skip
    print("| divergence | impl | time (s) | time ratio | extra memory (MiB) | memory ratio |")
    print("|---|---|---|---|---|---|")
    for d in args.divergences:
        t = timings(d, args.n, args.h, args.v, args.repeats)
        mem = {impl: extra_memory(impl, d, args.n, args.h, args.v) for impl in IMPLS}
        for impl in IMPLS:
            print(
                f"| {d} | {impl} | {t[impl]:.2f} | {t[impl] / t['materialised']:.2f} | "
                f"{mem[impl]:.0f} | {mem[impl] / mem['materialised']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
