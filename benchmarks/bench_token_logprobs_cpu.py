"""Per-token log-probabilities + entropy, and linear distillation, on CPU: fused vs materialised.

Cases (float32, defaults N = 4096 positions, H = 512, V = 32768):

- ``token_logprobs``: ``losskit.lm.token_logprobs(h, W, y, return_entropy=True)`` against the
  unfused ``logits = h @ W.T; log_softmax; gather; entropy = -(p * logp).sum(-1)`` (what TRL's
  ``selective_log_softmax`` + ``entropy_from_logits`` compute), forward + backward of
  ``logps.sum() + 0.01 * entropy.sum()`` into ``h`` and ``W``.
- ``token_logprobs_nograd``: the same forward under ``torch.no_grad()`` (the old-policy and
  reference-model log-probabilities of GRPO/DPO), no backward.
- ``token_logprobs_frozen_head``: forward + backward with a frozen ``W`` (no weight gradient:
  LoRA, a tied embedding trained elsewhere), gradients into ``h`` only.
- ``distill``: ``losskit.lm.linear_distillation_loss(hs, Ws, ht, Wt)`` (forward KL) against
  materialising both models' logits and ``kl_div(log_softmax(s), log_softmax(t))``, forward +
  backward into the student's ``hs`` and ``Ws`` (teacher H = 768).

Time: both implementations in one process, interleaved (A B A B ...), the median of the
repeats. Extra memory: each (case, implementation) in its own fresh process; the rise of the peak
resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) during one forward + backward
over the resident set just before it (inputs allocated, no gradients yet), so the gradients of
``h`` and ``W`` count on both sides.

Usage: ``python benchmarks/bench_token_logprobs_cpu.py [--n 4096] [--h 512] [--v 32768]
[--repeats 3]``; prints a Markdown table. The machine running it may be shared: quote several
runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from _peak_memory import peak_rise_mib

CASES = ("token_logprobs", "token_logprobs_nograd", "token_logprobs_frozen_head", "distill")
IMPLS = ("losskit", "unfused")


def make_inputs(case: str, n: int, h: int, v: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h, generator=g).requires_grad_()
    w = (torch.randn(v, h, generator=g) * h**-0.5).requires_grad_()
    if case.startswith("token_logprobs"):
        if case == "token_logprobs_frozen_head":
            w.requires_grad_(False)
        return x, w, torch.randint(v, (n,), generator=g)
    ht = torch.randn(n, 768, generator=g)
    wt = torch.randn(v, 768, generator=g) * 768**-0.5
    return x, w, ht, wt


def step(case: str, impl: str, inputs) -> None:
    """One forward + backward, called exactly as a user would."""
    if case.startswith("token_logprobs"):
        x, w, y = inputs
        with torch.set_grad_enabled(case != "token_logprobs_nograd"):
            if impl == "losskit":
                from losskit.lm import token_logprobs

                logp, ent = token_logprobs(x, w, y, return_entropy=True)
            else:
                logp_all = torch.log_softmax(x @ w.T, dim=-1)
                logp = logp_all.gather(-1, y.unsqueeze(-1)).squeeze(-1)
                ent = -(logp_all.exp() * logp_all).sum(-1)
            if case != "token_logprobs_nograd":
                (logp.sum() + 0.01 * ent.sum()).backward()
        return
    x, w, ht, wt = inputs
    if impl == "losskit":
        from losskit.lm import linear_distillation_loss

        loss = linear_distillation_loss(x, w, ht, wt)
    else:
        with torch.no_grad():
            lt = torch.log_softmax(ht @ wt.T, dim=-1)
        ls = torch.log_softmax(x @ w.T, dim=-1)
        loss = F.kl_div(ls, lt, log_target=True, reduction="batchmean")
    loss.backward()


def worker(case: str, impl: str, n: int, h: int, v: int) -> None:
    inputs = make_inputs(case, n, h, v)
    extra = peak_rise_mib(lambda: step(case, impl, inputs))
    print(json.dumps({"extra_mib": extra}))


def extra_memory(case: str, impl: str, n: int, h: int, v: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", case, impl, "--n", str(n), "--h", str(h),
         "--v", str(v)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_mib"]


def timings(case: str, n: int, h: int, v: int, repeats: int) -> dict[str, float]:
    inputs = make_inputs(case, n, h, v)
    times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    for _ in range(repeats):
        for impl in IMPLS:  # interleaved: A B A B ...
            for t in inputs:
                t.grad = None
            start = time.perf_counter()
            step(case, impl, inputs)
            times[impl].append(time.perf_counter() - start)
    return {impl: statistics.median(ts) for impl, ts in times.items()}


def check_agreement(n: int = 256, h: int = 64, v: int = 2048) -> None:
    """Both implementations give the same values and gradients before anything is timed."""
    for case in ("token_logprobs", "distill"):
        grads = []
        for impl in IMPLS:
            inputs = make_inputs(case, n, h, v)
            step(case, impl, inputs)
            grads.append([inputs[0].grad, inputs[1].grad])
        for a, b in zip(*grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--h", type=int, default=512)
    p.add_argument("--v", type=int, default=32768)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--worker", nargs=2, metavar=("CASE", "IMPL"))
    args = p.parse_args()
    if args.worker:
        worker(*args.worker, args.n, args.h, args.v)
        return
    check_agreement()
    print(f"N={args.n} H={args.h} V={args.v} float32, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; median of {args.repeats} interleaved repeats\n")  # fmt: skip
    print("| case | impl | time (s) | time ratio | extra memory (MiB) | memory ratio |")
    print("|---|---|---|---|---|---|")
    for case in args.cases:
        t = timings(case, args.n, args.h, args.v, args.repeats)
        mem = {impl: extra_memory(case, impl, args.n, args.h, args.v) for impl in IMPLS}
        for impl in IMPLS:
            print(
                f"| {case} | {impl} | {t[impl]:.2f} | {t[impl] / t['unfused']:.2f} | "
                f"{mem[impl]:.0f} | {mem[impl] / mem['unfused']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
