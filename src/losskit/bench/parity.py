"""``losskit bench --suite torch``: every torch mirror against torch's own op, as users call both.

For each of the torch mirrors, at a small size (32 × 10) and a large one (4096 × 1000, or the
equivalent element count; CTC at T = 200, N = 32), forward + backward of ``losskit.<name>`` and of
``torch.nn.functional.<name>`` on the same inputs are timed side by side in this process,
interleaved (A B A B ...), each block long enough to be read by ``perf_counter``; the ratio is
the median over the rounds of losskit's time over torch's. losskit runs as a user would run it:
the public function, backend ``auto`` (so the backend it picks on this device), under the default
checks (``"all"``) and, at the small size, again under ``set_checks("shapes")``. Each row names the
backend that ran.
"""

from __future__ import annotations

import datetime as _dt
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as TF

Make = Callable[[int, int, torch.Generator], tuple[tuple[Any, ...], dict[str, Any]]]


def _pair(n: int, c: int, g: torch.Generator):
    return (torch.randn(n, c, generator=g), torch.randn(n, c, generator=g)), {}


def _ce(n: int, c: int, g: torch.Generator):
    return (torch.randn(n, c, generator=g), torch.randint(c, (n,), generator=g)), {}


def _nll(n: int, c: int, g: torch.Generator):
    return (torch.randn(n, c, generator=g).log_softmax(1), torch.randint(c, (n,), generator=g)), {}


def _bce(n: int, c: int, g: torch.Generator):
    return (torch.rand(n, c, generator=g) * 0.98 + 0.01, torch.rand(n, c, generator=g)), {}


def _kl(n: int, c: int, g: torch.Generator):
    x = torch.randn(n, c, generator=g).log_softmax(1)
    return (x, torch.randn(n, c, generator=g).softmax(1)), {"reduction": "batchmean"}


def _poisson(n: int, c: int, g: torch.Generator):
    return (torch.randn(n, c, generator=g), torch.rand(n, c, generator=g) * 3), {}


def _gaussian(n: int, c: int, g: torch.Generator):
    x, y = torch.randn(n, c, generator=g), torch.randn(n, c, generator=g)
    return (x, y, torch.rand(n, c, generator=g) + 0.1), {}


def _ranking(n: int, c: int, g: torch.Generator):
    m = n * c
    sign = torch.randint(2, (m,), generator=g) * 2.0 - 1
    return (torch.randn(m, generator=g), torch.randn(m, generator=g), sign), {}


def _sign_target(n: int, c: int, g: torch.Generator):
    return (torch.randn(n, c, generator=g), torch.randint(2, (n, c), generator=g) * 2.0 - 1), {}


def _multilabel_margin(n: int, c: int, g: torch.Generator):
    y = torch.randint(c, (n, c), generator=g)
    y[:, c // 2 :] = -1
    return (torch.randn(n, c, generator=g), y), {}


def _multilabel_soft(n: int, c: int, g: torch.Generator):
    return (torch.randn(n, c, generator=g), torch.randint(2, (n, c), generator=g).float()), {}


def _cosine(n: int, c: int, g: torch.Generator):
    y = torch.randint(2, (n,), generator=g) * 2.0 - 1
    return (torch.randn(n, c, generator=g), torch.randn(n, c, generator=g), y), {}


def _triplet(n: int, c: int, g: torch.Generator):
    return tuple(torch.randn(n, c, generator=g) for _ in range(3)), {}


def _ctc(n: int, c: int, g: torch.Generator):
    # "small": T = 10, N = 32; "large": T = 200, N = 32 (c is the time length here).
    t_len, classes, s_len = c, 20, max(2, c // 4)
    log_probs = torch.randn(t_len, n, classes, generator=g).log_softmax(2)
    targets = torch.randint(1, classes, (n, s_len), generator=g)
    in_lens = torch.full((n,), t_len, dtype=torch.long)
    tgt_lens = torch.randint(1, s_len + 1, (n,), generator=g)
    return (log_probs, targets, in_lens, tgt_lens), {}


@dataclass(frozen=True)
class Mirror:
    name: str
    make: Make
    grad: tuple[int, ...] = (0,)
    large: tuple[int, int] = (4096, 1000)
    small: tuple[int, int] = (32, 10)


MIRRORS = (
    Mirror("l1_loss", _pair),
    Mirror("mse_loss", _pair),
    Mirror("smooth_l1_loss", _pair),
    Mirror("huber_loss", _pair),
    Mirror("cross_entropy", _ce),
    Mirror("nll_loss", _nll),
    Mirror("binary_cross_entropy", _bce),
    Mirror("binary_cross_entropy_with_logits", _pair),
    Mirror("kl_div", _kl),
    Mirror("poisson_nll_loss", _poisson),
    Mirror("gaussian_nll_loss", _gaussian),
    Mirror("margin_ranking_loss", _ranking, grad=(0, 1)),
    Mirror("hinge_embedding_loss", _sign_target),
    Mirror("soft_margin_loss", _sign_target),
    Mirror("multi_margin_loss", _ce),
    Mirror("multilabel_margin_loss", _multilabel_margin),
    Mirror("multilabel_soft_margin_loss", _multilabel_soft),
    Mirror("cosine_embedding_loss", _cosine, grad=(0, 1)),
    Mirror("triplet_margin_loss", _triplet, grad=(0, 1, 2)),
    Mirror("triplet_margin_with_distance_loss", _triplet, grad=(0, 1, 2)),
    Mirror("ctc_loss", _ctc, large=(32, 200), small=(32, 10)),
)


@dataclass
class Row:
    name: str
    size: str
    checks: str
    backend: str
    losskit_us: float
    torch_us: float

    @property
    def ratio(self) -> float:
        return self.losskit_us / self.torch_us


def _block(fn: Callable[[], None], reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def _step(f: Callable[..., torch.Tensor], args, kwargs, grad) -> Callable[[], None]:
    leaves = list(args)
    for k in grad:
        leaves[k] = args[k].detach().clone().requires_grad_(True)

    def step() -> None:
        for k in grad:
            leaves[k].grad = None
        f(*leaves, **kwargs).backward()

    return step


def _picked_backend(fn: Callable[..., torch.Tensor], args, kwargs) -> str:
    """The backend the public function runs on for these inputs (one traced call)."""
    from .._dispatch import traced

    with traced() as calls:
        fn(*args, **kwargs)
    return calls[0][1] if calls else "formula"


def time_pair(m: Mirror, size: str, checks: str, rounds: int, block_s: float, seed: int = 0) -> Row:
    import losskit

    n, c = m.small if size == "small" else m.large
    args, kwargs = m.make(n, c, torch.Generator().manual_seed(seed))
    ours = _step(getattr(losskit, m.name), args, kwargs, m.grad)
    theirs = _step(getattr(TF, m.name), args, kwargs, m.grad)
    previous = losskit.get_checks()
    losskit.set_checks(checks)
    try:
        ours()
        theirs()
        once = max(_block(ours, 3), _block(theirs, 3), 1e-6)
        reps = max(1, int(block_s / once))
        a, b = [], []
        for _ in range(rounds):
            a.append(_block(ours, reps))
            b.append(_block(theirs, reps))
    finally:
        losskit.set_checks(previous)
    label = f"{n}×{c}" if m.name != "ctc_loss" else f"T={c}, N={n}"
    return Row(
        m.name,
        label,
        checks,
        _picked_backend(getattr(losskit, m.name), args, kwargs),
        statistics.median(a) * 1e6,
        statistics.median(b) * 1e6,
    )


def run_parity(names: list[str] | None = None, rounds: int = 9, block_s: float = 0.05) -> list[Row]:
    """Both sizes of every mirror (or ``names``); the large size's blocks are 4x longer, so each
    holds several calls of tens of milliseconds."""
    rows = []
    for m in MIRRORS:
        if names and m.name not in names:
            continue
        rows.append(time_pair(m, "small", "all", rounds, block_s))
        rows.append(time_pair(m, "small", "shapes", rounds, block_s))
        rows.append(time_pair(m, "large", "all", rounds, 4 * block_s))
    return rows


def header() -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"# losskit vs torch's own op, forward + backward ({_dt.date.today().isoformat()})\n"
        f"CPU ({cpu}, {torch.get_num_threads()} threads), torch {torch.__version__}; "
        "interleaved blocks, median over rounds; ratio = losskit time / torch time "
        "(below 1: losskit faster)."
    )


def markdown(rows: list[Row]) -> str:
    lines = [
        "| loss | size | checks | backend | losskit µs | torch µs | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.size} | {r.checks} | {r.backend} | {r.losskit_us:.1f} | "
            f"{r.torch_us:.1f} | {r.ratio:.2f} |"
        )
    return "\n".join(lines)
