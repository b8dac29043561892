"""Quick parity check of losskit's torch mirrors against torch's own functionals (CPU).

Forward + backward of the public call (``losskit.X`` vs ``torch.nn.functional.X``, same
arguments), side by side in one process, interleaved (torch, losskit, losskit under
``set_checks("shapes")``, torch, ...), the minimum of several repetitions. Prints one markdown
row per loss and size: times in microseconds and the ratios to torch.

    python benchmarks/parity_quick.py                 # both sizes, every mirror
    python benchmarks/parity_quick.py --size small --only huber_loss ctc_loss

Sizes: ``small`` is 32 x 10 (CTC: T=32, N=10, C=10, S=5), ``large`` is 4096 x 1000 (4M
elements; 1-D losses take the 4M elements flat; CTC: T=200, N=32, C=50, S=30). The official
suite is ``losskit bench --suite torch``; this script is the quick check behind the numbers of
issue 13.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import losskit

Case = tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor], list[torch.Tensor]]


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def make_case(name: str, n: int, c: int, g: torch.Generator) -> Case:
    """(losskit call, torch call, leaves whose .grad is reset) for loss ``name`` at n x c."""
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    x = _leaf(r(n, c))
    sign = r(n, c).sign()
    L, T = losskit, F
    if name in ("l1_loss", "mse_loss", "smooth_l1_loss", "huber_loss"):
        y = r(n, c)
        return (lambda: getattr(L, name)(x, y)), (lambda: getattr(T, name)(x, y)), [x]
    if name == "cross_entropy":
        t = torch.randint(c, (n,), generator=g)
        return (lambda: L.cross_entropy(x, t)), (lambda: T.cross_entropy(x, t)), [x]
    if name == "nll_loss":
        lp = _leaf(r(n, c).log_softmax(1))
        t = torch.randint(c, (n,), generator=g)
        return (lambda: L.nll_loss(lp, t)), (lambda: T.nll_loss(lp, t)), [lp]
    if name == "binary_cross_entropy":
        p = _leaf(torch.rand(n, c, generator=g).clamp(0.01, 0.99))
        y = torch.rand(n, c, generator=g)
        fn = "binary_cross_entropy"
        return (lambda: getattr(L, fn)(p, y)), (lambda: getattr(T, fn)(p, y)), [p]
    if name == "binary_cross_entropy_with_logits":
        y = torch.rand(n, c, generator=g)
        fn = name
        return (lambda: getattr(L, fn)(x, y)), (lambda: getattr(T, fn)(x, y)), [x]
    if name == "kl_div":
        lq = _leaf(r(n, c).log_softmax(1))
        p = r(n, c).softmax(1)
        kw = {"reduction": "batchmean"}
        return (lambda: L.kl_div(lq, p, **kw)), (lambda: T.kl_div(lq, p, **kw)), [lq]
    if name == "poisson_nll_loss":
        y = torch.poisson(torch.rand(n, c, generator=g) * 4, generator=g)
        return (lambda: L.poisson_nll_loss(x, y)), (lambda: T.poisson_nll_loss(x, y)), [x]
    if name == "gaussian_nll_loss":
        y, var = r(n, c), torch.rand(n, c, generator=g) + 0.1
        return (
            (lambda: L.gaussian_nll_loss(x, y, var)),
            (lambda: T.gaussian_nll_loss(x, y, var)),
            [x],
        )
    if name == "margin_ranking_loss":
        a, b = _leaf(r(n * c)), r(n * c)
        t = r(n * c).sign()
        fn = name
        return (lambda: getattr(L, fn)(a, b, t)), (lambda: getattr(T, fn)(a, b, t)), [a]
    if name in ("hinge_embedding_loss", "soft_margin_loss"):
        return (lambda: getattr(L, name)(x, sign)), (lambda: getattr(T, name)(x, sign)), [x]
    if name == "multi_margin_loss":
        t = torch.randint(c, (n,), generator=g)
        return (lambda: L.multi_margin_loss(x, t)), (lambda: T.multi_margin_loss(x, t)), [x]
    if name == "multilabel_margin_loss":
        if n * c > 10_000:  # torch's CPU kernel is O(N C^2): 4096 x 1000 takes minutes
            c = 100
            x = _leaf(r(n, c))
        t = torch.randint(c, (n, c), generator=g)
        t[:, c // 4 :] = -1  # a quarter of the classes are targets
        fn = name
        return (lambda: getattr(L, fn)(x, t)), (lambda: getattr(T, fn)(x, t)), [x]
    if name == "multilabel_soft_margin_loss":
        y = (torch.rand(n, c, generator=g) > 0.5).float()
        fn = name
        return (lambda: getattr(L, fn)(x, y)), (lambda: getattr(T, fn)(x, y)), [x]
    if name == "cosine_embedding_loss":
        b = r(n, c)
        t = r(n).sign()
        fn = name
        return (lambda: getattr(L, fn)(x, b, t)), (lambda: getattr(T, fn)(x, b, t)), [x]
    if name in ("triplet_margin_loss", "triplet_margin_with_distance_loss"):
        p, q = r(n, c), r(n, c)
        return (lambda: getattr(L, name)(x, p, q)), (lambda: getattr(T, name)(x, p, q)), [x]
    if name == "ctc_loss":
        t_len, batch, classes, s = (200, 32, 50, 30) if n * c > 10_000 else (32, 10, 10, 5)
        lp = _leaf(torch.randn(t_len, batch, classes, generator=g).log_softmax(2))
        tg = torch.randint(1, classes, (batch, s), generator=g)
        il = torch.full((batch,), t_len, dtype=torch.long)
        tl = torch.randint(s // 2, s + 1, (batch,), generator=g)
        return (
            (lambda: L.ctc_loss(lp, tg, il, tl)),
            (lambda: T.ctc_loss(lp, tg, il, tl)),
            [lp],
        )
    raise KeyError(name)


MIRRORS = [
    "l1_loss",
    "mse_loss",
    "smooth_l1_loss",
    "huber_loss",
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "kl_div",
    "poisson_nll_loss",
    "gaussian_nll_loss",
    "margin_ranking_loss",
    "hinge_embedding_loss",
    "soft_margin_loss",
    "multi_margin_loss",
    "multilabel_margin_loss",
    "multilabel_soft_margin_loss",
    "cosine_embedding_loss",
    "triplet_margin_loss",
    "triplet_margin_with_distance_loss",
    "ctc_loss",
]


def _step(fn: Callable[[], torch.Tensor], leaves: list[torch.Tensor]) -> None:
    for leaf in leaves:
        leaf.grad = None
    fn().backward()


def time_case(case: Case, number: int, reps: int) -> tuple[float, float, float]:
    """Min seconds per call of torch, losskit (default checks), losskit (``shapes``).

    The check level is set around each timed window, not inside it, so the ``shapes`` column
    does not pay for the switch."""
    ours, theirs, leaves = case
    contenders = ((theirs, "all"), (ours, "all"), (ours, "shapes"))
    for fn, level in contenders:  # warm up
        with losskit.set_checks(level):
            _step(fn, leaves)
    best = [float("inf")] * 3
    for _ in range(reps):
        for k, (fn, level) in enumerate(contenders):
            with losskit.set_checks(level):
                t0 = time.perf_counter()
                for _ in range(number):
                    _step(fn, leaves)
                best[k] = min(best[k], (time.perf_counter() - t0) / number)
    return best[0], best[1], best[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("small", "large", "both"), default="both")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--reps", type=int, default=0, help="repetitions (default 15 small, 5 large)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = {"small": [(32, 10)], "large": [(4096, 1000)], "both": [(32, 10), (4096, 1000)]}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, fwd+bwd, min of reps"
    )
    print("| loss | size | torch µs | losskit µs | ratio | shapes µs | ratio (shapes) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for n, c in sizes[args.size]:
        small = n * c <= 10_000
        # Short timed windows and many of them: the minimum then finds the quiet moments of a
        # shared machine.
        number = 20 if small else 1
        reps = args.reps or (40 if small else 3)
        for name in args.only or MIRRORS:
            g = torch.Generator().manual_seed(0)
            t, o, s = time_case(make_case(name, n, c, g), number, reps)
            size = f"{n}x{c}"
            if name == "ctc_loss":
                size = "T32 N10" if small else "T200 N32"
            elif name == "multilabel_margin_loss" and not small:
                size = f"{n}x100"
            print(
                f"| {name} | {size} | {t * 1e6:.1f} | {o * 1e6:.1f} | {o / t:.2f} | "
                f"{s * 1e6:.1f} | {s / t:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
