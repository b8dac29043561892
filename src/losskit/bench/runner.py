"""Time forward + backward of every contender of every case, side by side, and write the tables.

Method: several input sets are made per case and used in turn (so repeated iterations do not
time the cache); ``.grad`` is set to ``None`` before each iteration (so the accumulation of a
previous gradient is not timed); each contender is warmed up first (compilation, autotuning);
the time is the median over the iterations (CUDA events on a GPU, ``perf_counter`` on the CPU,
where a contender runs for at least a second, since CPU timings of a few milliseconds vary much
from one iteration to the next).
"Peak extra memory" is the CUDA allocator's peak during one iteration minus what was allocated
before it (inputs included there, so it counts activations, workspaces and the gradients).
On CUDA the copy bandwidth is measured once; a case's floor is its fewest bytes over that
bandwidth (or its FLOP over the measured bf16 matrix-product rate), and "of floor" is
``floor / time``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .cases import CASES, Case, Inputs, LossFn, Unavailable


@dataclass
class Result:
    case: str
    contender: str
    median_ms: float | None = None
    peak_extra_mb: float | None = None
    note: str = ""
    floor_ms: float | None = None

    @property
    def of_floor(self) -> float | None:
        if self.floor_ms is None or not self.median_ms:
            return None
        return self.floor_ms / self.median_ms


@dataclass
class Settings:
    device: str
    warmup: int
    iters: int
    rotations: int
    compile: bool
    min_seconds: float = 0.0  # CPU: keep iterating (up to max_iters) until this much time passed
    max_iters: int = 0


def _settings(device: str, compile_: bool | None) -> Settings:
    cuda = device.startswith("cuda")
    if compile_ is None:
        compile_ = cuda or os.environ.get("LOSSKIT_BENCH_COMPILE", "") == "1"
    return Settings(
        device,
        warmup=3,
        iters=20 if cuda else 5,
        rotations=3 if cuda else 2,
        compile=compile_,
        min_seconds=0.0 if cuda else 1.0,
        max_iters=20 if cuda else 200,
    )


def _iterations(s: Settings) -> str:
    if not s.min_seconds:
        return f"{s.iters} iterations"
    return f"{s.iters} to {s.max_iters} iterations (as many as fit in {s.min_seconds:g} s)"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_grads(inputs: Inputs, keys: tuple[str, ...]) -> None:
    for k in keys:
        inputs[k].grad = None


def _step(fn: LossFn, inputs: Inputs, keys: tuple[str, ...]) -> None:
    _reset_grads(inputs, keys)
    loss = fn(inputs)
    loss.backward()


def _time_contender(
    fn: LossFn, sets: list[Inputs], case: Case, s: Settings
) -> tuple[float, float | None]:
    keys = case.grad_keys
    for k in range(s.warmup):
        _step(fn, sets[k % len(sets)], keys)
    _sync(s.device)
    times: list[float] = []
    if s.device.startswith("cuda"):
        events = []
        for k in range(s.iters):
            inputs = sets[k % len(sets)]
            _reset_grads(inputs, keys)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(inputs).backward()
            end.record()
            events.append((start, end))
        torch.cuda.synchronize()
        times = [a.elapsed_time(b) for a, b in events]
        # Peak extra memory of one more iteration, the previous gradients released first.
        for inputs in sets:
            _reset_grads(inputs, keys)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn(sets[0]).backward()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        deadline = time.perf_counter() + s.min_seconds
        k = 0
        while k < s.iters or (k < s.max_iters and time.perf_counter() < deadline):
            inputs = sets[k % len(sets)]
            t0 = time.perf_counter()
            _step(fn, inputs, keys)
            times.append((time.perf_counter() - t0) * 1e3)
            k += 1
        peak = None
    for inputs in sets:
        _reset_grads(inputs, keys)
    return statistics.median(times), peak


def _contenders(case: Case, s: Settings) -> Iterator[tuple[str, Callable[[], LossFn]]]:
    for name, factory in case.contenders.items():
        if name == "losskit" and case.loss is not None:
            yield from _losskit_rows(case.loss, factory, s)
        else:
            yield name, factory
    formula = case.contenders[case.formula]

    def compiled() -> LossFn:
        if not s.compile:
            raise Unavailable("skipped on the CPU (slow to compile); --compile on runs it")
        return torch.compile(formula())

    yield "torch.compile", compiled


def _losskit_rows(
    loss: str, factory: Callable[[], LossFn], s: Settings
) -> Iterator[tuple[str, Callable[[], LossFn]]]:
    """One row per backend of ``loss`` that can run on the device, the public function called
    with that backend pinned (``use_backend``) under the default checks."""
    from .. import _registry
    from .._dispatch import use_backend

    names = _registry.get(loss).backend_names
    if not s.device.startswith("cuda"):
        names = tuple(b for b in names if b != "kernel")
    for backend in names:

        def pinned(backend: str = backend) -> LossFn:
            fn = factory()

            def call(inputs: Inputs) -> torch.Tensor:
                with use_backend(backend):
                    return fn(inputs)

            return call

        yield f"losskit [{backend}, checks=all]", pinned


def _make_sets(case: Case, s: Settings, device_type: str) -> list[Inputs]:
    g = torch.Generator().manual_seed(0)
    sets = []
    for _ in range(s.rotations):
        inputs = case.make(
            case.sizes[device_type], case.dtype[device_type], torch.device(s.device), g
        )
        for k in case.grad_keys:
            inputs[k].requires_grad_(True)
        inputs["_device"] = s.device
        sets.append(inputs)
    return sets


def _copy_bandwidth(device: str) -> float:
    """Device-to-device copy bandwidth in bytes/s (bytes read + bytes written)."""
    n = 1 << 28  # 1 GiB of float32
    a = torch.empty(n, device=device)
    b = torch.empty_like(a)
    a.uniform_()
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        b.copy_(a)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del a, b
    return 2 * n * 4 / statistics.median(times)


def _matmul_rate(device: str) -> float:
    """bf16 matrix-product rate in FLOP/s (8192^3, random data)."""
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 10 * 2 * n**3 / (start.elapsed_time(end) / 1e3)


class _Progress:
    """A rich progress bar when ``rich`` is importable, else one line per step."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        try:
            from rich.progress import Progress

            self._rich = Progress(transient=False)
        except ImportError:
            self._rich = None

    @contextmanager
    def running(self) -> Iterator[_Progress]:
        if self._rich is None:
            yield self
            return
        with self._rich:
            self._task = self._rich.add_task("bench", total=self.total)
            yield self

    def step(self, label: str) -> None:
        self.done += 1
        if self._rich is None:
            print(f"[{self.done}/{self.total}] {label}", flush=True)
        else:
            self._rich.update(self._task, advance=1, description=label[:60])


def _fmt(v: float | None, spec: str) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def markdown_table(results: list[Result], cases: dict[str, str]) -> str:
    """One Markdown table per case: a row per contender, losskit first."""
    out = []
    for case, title in cases.items():
        rows = [r for r in results if r.case == case]
        if not rows:
            continue
        best = min((r.median_ms for r in rows if r.median_ms is not None), default=None)
        out += [
            f"### {title}",
            "",
            "| contender | median ms | vs fastest | peak extra MB | floor ms | of floor | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            frac = r.of_floor
            ratio = None if r.median_ms is None or not best else r.median_ms / best
            out.append(
                f"| {r.contender} | {_fmt(r.median_ms, '.3f')} | "
                f"{'—' if ratio is None else f'{ratio:.2f}x'} | {_fmt(r.peak_extra_mb, '.0f')} | "
                f"{_fmt(r.floor_ms, '.3f')} | {'—' if frac is None else f'{100 * frac:.0f}%'} | "
                f"{r.note} |"
            )
        out.append("")
    return "\n".join(out).rstrip()


def _write_csv(path: Path, results: list[Result]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["case", "contender", "median_ms", "peak_extra_mb", "floor_ms", "of_floor", "note"]
        )
        for r in results:
            w.writerow(
                [r.case, r.contender, r.median_ms, r.peak_extra_mb, r.floor_ms, r.of_floor, r.note]
            )


def _write_chart(path: Path, results: list[Result], title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cases = list(dict.fromkeys(r.case for r in results))
    fig, axes = plt.subplots(len(cases), 1, figsize=(9, 2.2 * len(cases)), squeeze=False)
    for ax, case in zip(axes[:, 0], cases, strict=True):
        rows = [r for r in results if r.case == case and r.median_ms is not None]
        names = [r.contender for r in rows]
        times = [r.median_ms for r in rows]
        colors = ["tab:green" if n.startswith("losskit") else "tab:gray" for n in names]
        bars = ax.barh(names, times, color=colors)
        ax.bar_label(bars, labels=[f"{t:.3g} ms" for t in times], fontsize=7, padding=2)
        ax.set_xlim(0, max(times, default=1.0) * 1.25)
        floor = next((r.floor_ms for r in rows if r.floor_ms), None)
        if floor:
            ax.axvline(floor, color="tab:red", linestyle="--", linewidth=1, label="floor")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_title(case, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("median forward + backward time, ms")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def run(
    device: str = "cpu",
    case: str | None = None,
    out_dir: str = "bench-out",
    *,
    compile: bool | None = None,
) -> int:
    """Run the benchmark (``losskit bench``); print the table and write ``results.md``,
    ``results.csv`` and ``results.png`` into ``out_dir``. Returns the process exit status."""
    if case is not None and case not in CASES:
        print(
            f"losskit bench: error: unknown --case {case!r}; choose one of: {', '.join(CASES)}",
            file=sys.stderr,
        )
        return 2
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    if device_type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available", file=sys.stderr)
        return 2
    s = _settings(device, compile)
    selected = [CASES[case]] if case else list(CASES.values())
    bandwidth = _copy_bandwidth(device) if device_type == "cuda" else None
    flops = (
        _matmul_rate(device)
        if device_type == "cuda" and any(c.floor_flops for c in selected)
        else None
    )

    total = sum(len(c.contenders) + 1 for c in selected)
    progress = _Progress(total)
    results: list[Result] = []
    with progress.running():
        for c in selected:
            sets = _make_sets(c, s, device_type)
            floor_ms = None
            if c.floor_bytes and bandwidth:
                floor_ms = c.floor_bytes(sets[0]) / bandwidth * 1e3
            elif c.floor_flops and flops:
                floor_ms = c.floor_flops(c.sizes[device_type]) / flops * 1e3
            for name, factory in _contenders(c, s):
                r = Result(c.name, name, floor_ms=floor_ms)
                try:
                    r.median_ms, r.peak_extra_mb = _time_contender(factory(), sets, c, s)
                except Unavailable as e:
                    r.note = str(e)
                except Exception as e:  # a failing peer must not stop the others
                    r.note = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"
                if device_type == "cuda":
                    torch.cuda.empty_cache()
                results.append(r)
                progress.step(f"{c.name}: {name}")
            del sets

    names = {c.name: c.describe(device_type) for c in selected}
    header = _header(device, bandwidth, flops, s)
    table = markdown_table(results, names)
    notes = [f"- {c.name}: {n}" for c in selected for n in c.notes]
    text = "\n".join([header, "", table, *(["", *notes] if notes else [])])
    print()
    print(text)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text + "\n")
    _write_csv(out / "results.csv", results)
    if _write_chart(out / "results.png", results, header.splitlines()[0].lstrip("# ")):
        print(f"\nwrote {out / 'results.md'}, {out / 'results.csv'}, {out / 'results.png'}")
    else:
        print(f"\nwrote {out / 'results.md'}, {out / 'results.csv'} (no matplotlib: no chart)")
    return 0


def _header(device: str, bandwidth: float | None, flops: float | None, s: Settings) -> str:
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        import platform

        name = (
            f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        )
    try:
        import triton

        tri = f", triton {triton.__version__}"
    except ImportError:
        tri = ", no triton"
    lines = [
        f"# losskit bench on {name}",
        f"{_dt.date.today().isoformat()}, torch {torch.__version__}{tri}; forward + backward, median of "
        f"{_iterations(s)} after {s.warmup} warm-up, {s.rotations} input sets in rotation, "
        "`.grad = None` between iterations.",
    ]
    if bandwidth:
        lines.append(f"Measured copy bandwidth {bandwidth / 1e12:.2f} TB/s (read + write).")
    if flops:
        lines.append(f"Measured bf16 matrix-product rate {flops / 1e12:.0f} TFLOP/s.")
    return "\n".join(lines)
