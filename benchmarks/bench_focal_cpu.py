"""Focal losses on the CPU, forward + backward, side by side in one process (interleaved A B C ...).

softmax focal (gamma = 2, class-index targets):

- ``losskit``: ``losskit.softmax_focal_loss`` (closed-form gradient in a
  ``torch.autograd.Function``, exact on confidently wrong rows);
- ``autograd``: the value differentiated by autograd (losskit's formula before the fix:
  ``log_softmax``, ``gather``, a masked ``logsumexp`` for ``log(1 - p_y)``);
- ``kornia-style``: kornia's ``focal_loss`` formula (``-(1 - p)^gamma log p`` times a one-hot over
  every class), reproduced here (kornia itself is not a dependency).

sigmoid focal (gamma = 2, alpha = 0.25, multi-label targets): ``losskit.sigmoid_focal_loss`` with no
option, with a per-class ``weight``, with ``pos_weight`` and with ``ignore_index`` (the cost of the
new options on the formula backend).

Usage: ``python benchmarks/bench_focal_cpu.py [--repeats 7] [--threads N]``. Each row is the
median of the repeats, in milliseconds; run it twice and quote both (the machine may be shared).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

import losskit


def autograd_softmax_focal(x: torch.Tensor, t: torch.Tensor, gamma: float) -> torch.Tensor:
    log_p = F.log_softmax(x, 1)
    target = t.unsqueeze(1)
    loss = -log_p.gather(1, target).squeeze(1)
    is_target = torch.zeros_like(x, dtype=torch.bool).scatter_(1, target, True)
    log_q = torch.logsumexp(log_p.masked_fill(is_target, -math.inf), 1)
    return (torch.exp(gamma * log_q) * loss).mean()


def kornia_style_softmax_focal(x: torch.Tensor, t: torch.Tensor, gamma: float) -> torch.Tensor:
    log_p = x.log_softmax(1)
    one_hot = F.one_hot(t, x.shape[1]).movedim(-1, 1).to(x.dtype)
    return (-torch.pow(1.0 - log_p.exp(), gamma) * log_p * one_hot).sum(1).mean()


def time_fb(fn, x: torch.Tensor) -> float:
    leaf = x.detach().requires_grad_(True)
    start = time.perf_counter()
    fn(leaf).backward()
    return (time.perf_counter() - start) * 1e3


def run(cases: dict[str, tuple], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for fn, x in cases.values():  # warm-up
        time_fb(fn, x)
    for _ in range(repeats):
        for name, (fn, x) in cases.items():  # interleaved
            times[name].append(time_fb(fn, x))
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, forward + backward")

    for shape in ((65536, 80), (8, 21, 128, 128)):
        x = torch.randn(*shape, generator=g) * 3
        t = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
        cases = {
            "losskit": (lambda a, t=t: losskit.softmax_focal_loss(a, t, gamma=2.0), x),
            "autograd": (lambda a, t=t: autograd_softmax_focal(a, t, 2.0), x),
            "kornia-style": (lambda a, t=t: kornia_style_softmax_focal(a, t, 2.0), x),
        }
        medians = run(cases, args.repeats)
        print(f"softmax focal {shape}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in medians.items()))

    x = torch.randn(65536, 80, generator=g) * 3
    y = (torch.rand(65536, 80, generator=g) < 0.05).float()
    y_ign = y.clone()
    y_ign[::7] = -1.0
    w = torch.rand(80, generator=g) + 0.5
    cases = {
        "plain": (lambda a: losskit.sigmoid_focal_loss(a, y), x),
        "weight": (lambda a: losskit.sigmoid_focal_loss(a, y, weight=w), x),
        "pos_weight": (lambda a: losskit.sigmoid_focal_loss(a, y, pos_weight=w), x),
        "ignore_index": (lambda a: losskit.sigmoid_focal_loss(a, y_ign, ignore_index=-1), x),
    }
    medians = run(cases, args.repeats)
    print("sigmoid focal (65536, 80): " + ", ".join(f"{k} {v:.1f} ms" for k, v in medians.items()))


if __name__ == "__main__":
    main()
