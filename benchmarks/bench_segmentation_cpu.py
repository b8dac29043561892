"""Segmentation losses on CPU, forward + backward: losskit vs MONAI and smp, side by side.

Cases, at ``(N, C, H, W) = (8, 4, 256, 256)`` float32 logits and class-index targets (softmax):

- ``dice``: ``losskit.segmentation.dice_loss`` (per image) vs MONAI ``DiceLoss(softmax=True,
  to_onehot_y=True)`` (per image) vs smp ``DiceLoss("multiclass")`` (smp always sums over the
  batch; losskit's ``batch_dice=True`` is timed beside it).
- ``lovasz``: ``lovasz_softmax_loss`` per image (``batch_dice=False``) vs smp ``LovaszLoss(
  "multiclass", per_image=True)`` (a Python loop over images and classes), and over the batch
  (``batch_dice=True``) vs smp's ``per_image=False`` (a loop over classes).

Each contender is called exactly as a user calls it (the public function or Module). Before
timing, the script checks that the paired calls give the same value. The contenders run
interleaved in one process (A B C A B C ...), each round timing one forward + backward, and the
whole measurement is done twice, in two separate processes ("run 1", "run 2"), so that a
disturbance by other processes on a shared machine shows as a disagreement between the runs.
Reported: the median per contender, and its ratio to the losskit contender of its group.

Peers are optional and installed without dependencies (they must not replace torch)::

    pip install --no-deps monai segmentation-models-pytorch

Usage: ``python benchmarks/bench_segmentation_cpu.py [--rounds 21] [--cases dice lovasz]``
(on a shared machine under the CPU lock: ``flock /tmp/cpu.lock python ...``); the table is printed
and written to ``benchmarks/results/segmentation_cpu.md``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

import losskit
from losskit import segmentation as S

HERE = Path(__file__).resolve().parent
SHAPE = (8, 4, 256, 256)


def smp_losses():
    """smp's losses subpackage, under an empty parent if the full package does not import."""
    try:
        return importlib.import_module("segmentation_models_pytorch.losses")
    except ImportError:
        spec = importlib.util.find_spec("segmentation_models_pytorch")
        if spec is None:
            return None
        for name in [m for m in sys.modules if m.startswith("segmentation_models_pytorch")]:
            del sys.modules[name]
        parent = types.ModuleType("segmentation_models_pytorch")
        parent.__path__ = list(spec.submodule_search_locations)
        sys.modules["segmentation_models_pytorch"] = parent
        return importlib.import_module("segmentation_models_pytorch.losses")


def unchecked(fn, **kwargs):
    """``fn`` under ``losskit.set_checks("shapes")``: without the class-index range check (one
    pass over the target that MONAI and smp do not make)."""

    def call(x, y):
        losskit.set_checks("shapes")
        try:
            return fn(x, y, **kwargs)
        finally:
            losskit.set_checks("all")

    return call


def contenders(case: str) -> dict[str, tuple[str, object]]:
    """name -> (group, fn(x, y)); contenders in one group compute the same value."""
    out: dict[str, tuple[str, object]] = {}
    smp = smp_losses()
    if case == "dice":
        out["losskit dice_loss"] = ("image", lambda x, y: S.dice_loss(x, y, eps=0.0))
        out["losskit dice_loss, value checks off"] = ("image", unchecked(S.dice_loss, eps=0.0))
        try:
            from monai.losses import DiceLoss

            monai = DiceLoss(softmax=True, to_onehot_y=True)
            out["MONAI DiceLoss"] = ("image", lambda x, y: monai(x, y[:, None]))
        except ImportError:
            pass
        out["losskit dice_loss(batch_dice=True)"] = (
            "batch",
            lambda x, y: S.dice_loss(x, y, batch_dice=True, smooth=0.0, eps=2e-7),
        )
        if smp is not None:
            smp_dice = smp.DiceLoss("multiclass")
            out["smp DiceLoss"] = ("batch", lambda x, y: smp_dice(x, y))
    else:
        out["losskit lovasz_softmax_loss"] = ("image", lambda x, y: S.lovasz_softmax_loss(x, y))
        out["losskit lovasz_softmax_loss, value checks off"] = (
            "image",
            unchecked(S.lovasz_softmax_loss),
        )
        if smp is not None:
            per_image = smp.LovaszLoss("multiclass", per_image=True)
            out["smp LovaszLoss(per_image=True)"] = ("image", lambda x, y: per_image(x, y))
        out["losskit lovasz_softmax_loss(batch_dice=True)"] = (
            "batch",
            lambda x, y: S.lovasz_softmax_loss(x, y, batch_dice=True),
        )
        if smp is not None:
            batch = smp.LovaszLoss("multiclass", per_image=False)
            out["smp LovaszLoss(per_image=False)"] = ("batch", lambda x, y: batch(x, y))
    return out


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=g)
    y = torch.randint(SHAPE[1], (SHAPE[0], *SHAPE[2:]), generator=g)
    return x, y


def check_agreement(fns: dict[str, tuple[str, object]], x, y) -> None:
    values: dict[str, list[tuple[str, float]]] = {}
    for name, (group, fn) in fns.items():
        values.setdefault(group, []).append((name, float(fn(x, y))))
    for group, pairs in values.items():
        ref = pairs[0][1]
        for name, v in pairs[1:]:
            if abs(v - ref) > 1e-4 * max(1.0, abs(ref)):
                raise SystemExit(f"{name} = {v} but {pairs[0][0]} = {ref} ({group})")


def measure(fns, x0, y, rounds: int) -> dict[str, float]:
    xs = {name: x0.clone().requires_grad_() for name in fns}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for name, (_, fn) in fns.items():  # warm-up
        fn(xs[name], y).backward()
    for _ in range(rounds):
        for name, (_, fn) in fns.items():  # interleaved: A B C A B C ...
            x = xs[name]
            x.grad = None
            t0 = time.perf_counter()
            fn(x, y).backward()
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def child(args) -> None:
    """One run: every case measured in this process; medians printed as JSON."""
    x, y = inputs()
    out = {}
    for case in args.cases:
        fns = contenders(case)
        check_agreement(fns, x, y)
        out[case] = {
            "times": measure(fns, x, y, args.rounds),
            "groups": {name: group for name, (group, _) in fns.items()},
        }
    print(json.dumps(out))


def ratio(results: dict, case: str, name: str) -> str:
    """``time / time of the first (losskit) contender of the group``, e.g. ``1.00`` for itself."""
    groups = results[case]["groups"]
    first = next(n for n, g in groups.items() if g == groups[name])
    return f"{results[case]['times'][name] / results[case]['times'][first]:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument(
        "--cases", nargs="+", choices=("dice", "lovasz"), default=["dice", "lovasz"]
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "segmentation_cpu.md")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return
    load = os.getloadavg()[0]
    cmd = [sys.executable, __file__, "--child", "--rounds", str(args.rounds), "--cases"]
    runs = [
        json.loads(
            subprocess.run(cmd + args.cases, capture_output=True, text=True, check=True).stdout
        )
        for _ in range(2)
    ]
    lines = [
        f"# Segmentation losses, CPU, forward + backward, {SHAPE} float32",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at the start; {args.rounds} interleaved "
        "rounds per run, median; each run a separate process. Ratio: time / the first (losskit) "
        "contender of its group (> 1: slower than losskit).",
        "",
        "| case | contender | run 1 (ms) | run 2 (ms) | ratio run 1 | ratio run 2 |",
        "|---|---|---|---|---|---|",
    ]
    for case in args.cases:
        for name in runs[0][case]["times"]:
            t1, t2 = (r[case]["times"][name] for r in runs)
            r1, r2 = (ratio(r, case, name) for r in runs)
            lines.append(f"| {case} | {name} | {t1:.1f} | {t2:.1f} | {r1} | {r2} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
