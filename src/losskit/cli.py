"""The ``losskit`` command: ``check``, ``list``, ``bench`` and ``demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_check(args: argparse.Namespace) -> int:
    from .conformance import format_table, run_checks

    rows = run_checks(args.loss or None, args.family, args.device)
    if not rows:
        print("no registered loss matches the selection", file=sys.stderr)
        return 2
    print(format_table(rows))
    failed = [r for r in rows if not r.passed]
    cases = sum(r.cases for r in rows)
    print(
        f"\n{len(rows)} losses, {cases} cases: {len(rows) - len(failed)} passed, {len(failed)} failed"
    )
    for r in failed:
        print(f"\n{r.name}:")
        for f in r.failures[: args.max_failures]:
            print(f"  {f}")
    return 1 if failed else 0


def _cmd_list(args: argparse.Namespace) -> int:
    from ._registry import all_losses

    infos = all_losses(args.family)
    width = max((len(i.name) for i in infos), default=4)
    for info in infos:
        module = info.module.__name__ if info.module is not None else "-"
        print(f"{info.name.ljust(width)}  {info.family:<15} {module:<28} {info.formula}")
    print(f"\n{len(infos)} losses")
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit status 2), without the usage block."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fail(message: str) -> int:
    print(f"losskit demo: error: {message}", file=sys.stderr)
    return 2


def _cmd_demo(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    import torch

    if args.device not in ("cpu", "cuda"):
        return _fail(f"--device must be 'cpu' or 'cuda', got {args.device!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        return _fail("--device cuda was asked for, but torch sees no CUDA device")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK):
            raise PermissionError("not writable")
    except OSError as exc:
        return _fail(f"cannot write to --out {str(out)!r}: {exc.strerror or exc}")
    try:
        import matplotlib  # noqa: F401
        import rich  # noqa: F401
        import sklearn  # noqa: F401

        from .demo import DemoConfig, run
    except ImportError as exc:
        return _fail(f'the demo needs its extra ({exc.name} is missing): pip install -e ".[demo]"')
    run(DemoConfig(out=out, seed=args.seed, device=args.device, quick=args.quick))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run

    compile_flag = {"auto": None, "on": True, "off": False}[args.compile]
    return run(args.device, args.case, args.out, compile=compile_flag)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="losskit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="compare every loss with its NumPy reference and torch")
    check.add_argument("--loss", action="append", help="only this loss (repeatable)")
    check.add_argument("--family", help="only this family")
    check.add_argument("--device", default="cpu", help="device to run the losses on (default cpu)")
    check.add_argument("--max-failures", type=int, default=5, help="failures shown per loss")
    check.set_defaults(func=_cmd_check)

    lst = sub.add_parser("list", help="print the catalogue with each loss's formula")
    lst.add_argument("--family", help="only this family")
    lst.set_defaults(func=_cmd_list)

    bench = sub.add_parser(
        "bench", help="time the hot losses against torch, torch.compile and the peers"
    )
    bench.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    bench.add_argument("--case", help="only this case (default: all)")
    bench.add_argument("--out", default="bench-out", help="folder for results.md/csv/png")
    bench.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="include torch.compile (auto: on CUDA only)",
    )
    bench.set_defaults(func=_cmd_bench)

    demo = sub.add_parser("demo", help="train real models on scikit-learn's digits with losskit")
    demo.add_argument(
        "--quick", action="store_true", help="a short run (under 30 s on 2 CPU cores)"
    )
    demo.add_argument(
        "--seed", type=int, default=0, help="random seed (runs are deterministic on CPU)"
    )
    demo.add_argument("--device", default="cpu", help="cpu or cuda")
    demo.add_argument("--out", default="losskit-demo", help="folder for the PNG plots")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
