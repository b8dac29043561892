"""The ``losskit`` command: ``check``, ``list``, ``bench`` and ``demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_check(args: argparse.Namespace) -> int:
    import warnings

    from ._registry import all_losses
    from .conformance import format_table, run_checks

    problem = _device_problem(args.device) or _selection_problem(args.loss, args.family)
    if problem:
        return _fail("check", problem)
    with warnings.catch_warnings():
        # torch's own kl_div(reduction="mean") warns on every comparison: noise here.
        warnings.simplefilter("ignore", UserWarning)
        rows = run_checks(args.loss or None, args.family, args.device, args.backend)
    if not rows:
        names = ", ".join(args.loss or [])
        families = sorted({i.family for i in all_losses()})
        return _fail(
            "check", f"no loss named {names} in family {args.family!r}; families: {families}"
        )
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

    problem = _selection_problem(args.where and [args.where], args.family)
    if problem:
        return _fail("list", problem)
    if args.where:
        from .where import locate

        for layer, place in locate(args.where):
            print(f"{layer:<11} {place}")
        return 0
    infos = all_losses(args.family)
    width = max((len(i.name) for i in infos), default=4)
    for info in infos:
        module = info.module.__name__ if info.module is not None else "-"
        backends = ",".join(info.backend_names) + ("" if info.compiles_whole else " *")
        print(
            f"{info.name.ljust(width)}  {info.family:<15} {module:<28} {backends:<22} "
            f"{info.formula}"
        )
    print(
        f"\n{len(infos)} losses. Backends: torch (torch's own op), formula (losskit's PyTorch "
        "composition), kernel (Triton, CUDA); * = output shape depends on the data, so "
        "torch.compile traces it with graph breaks (every other loss compiles whole)."
    )
    return 0


def _selection_problem(names: list[str] | None, family: str | None) -> str | None:
    """Why ``--loss``/``--family`` select nothing, naming what exists; ``None`` if they are fine."""
    from ._registry import all_losses

    infos = all_losses()
    families = sorted({i.family for i in infos})
    if family is not None and family not in families:
        return f"unknown --family {family!r}; choose one of: {', '.join(families)}"
    unknown = [n for n in names or [] if n not in {i.name for i in infos}]
    if unknown:
        return f"unknown --loss {', '.join(map(repr, unknown))}; `losskit list` shows the names"
    return None


def _device_problem(device: str) -> str | None:
    """Why ``--device`` cannot be used here; ``None`` if it can."""
    import torch

    kind = device.split(":", 1)[0]
    if kind not in ("cpu", "cuda"):
        return f"--device must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}"
    if kind == "cuda" and not torch.cuda.is_available():
        return f"--device {device} was asked for, but torch sees no CUDA device"
    return None


def _out_problem(out: str, option: str = "--out") -> str | None:
    """Create ``out`` if needed; why it cannot be written to, or ``None``."""
    import os
    from pathlib import Path

    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError("not writable")
    except OSError as exc:
        return f"cannot write to {option} {str(path)!r}: {exc.strerror or exc}"
    return None


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit status 2), without the usage block."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fail(command: str, message: str) -> int:
    print(f"losskit {command}: error: {message}", file=sys.stderr)
    return 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    if not 0 <= args.seed < 2**32:
        return _fail("demo", f"--seed must be in [0, 2**32), got {args.seed}")
    problem = _device_problem(args.device) or _out_problem(args.out)
    if problem:
        return _fail("demo", problem)
    try:
        import matplotlib  # noqa: F401
        import rich  # noqa: F401
        import sklearn  # noqa: F401

        from .demo import DemoConfig, run
    except ImportError as exc:
        return _fail(
            "demo", f'the demo needs its extra ({exc.name} is missing): pip install -e ".[demo]"'
        )
    run(DemoConfig(out=Path(args.out), seed=args.seed, device=args.device, quick=args.quick))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run

    # Checked before timing anything: a bad --out must not lose a finished run.
    problem = _device_problem(args.device) or _out_problem(args.out)
    if problem:
        return _fail("bench", problem)
    if args.suite == "torch":
        return _bench_parity(args)
    compile_flag = {"auto": None, "on": True, "off": False}[args.compile]
    return run(args.device, args.case, args.out, compile=compile_flag)


def _bench_parity(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bench import parity

    if args.device != "cpu":
        return _fail("bench", "--suite torch runs on the CPU (its targets are CPU ones)")
    names = [m.name for m in parity.MIRRORS]
    if args.case is not None and args.case not in names:
        return _fail(
            "bench", f"--suite torch: unknown --case {args.case!r}; mirrors: {', '.join(names)}"
        )
    rows = parity.run_parity([args.case] if args.case else None, rounds=args.rounds)
    text = parity.header() + "\n\n" + parity.markdown(rows)
    print(text)
    path = Path(args.out) / "parity.md"
    path.write_text(text + "\n")
    print(f"\nwrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="losskit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"losskit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="compare every loss with its NumPy reference and torch")
    check.add_argument("--loss", action="append", help="only this loss (repeatable)")
    check.add_argument("--family", help="only this family")
    check.add_argument("--device", default="cpu", help="device to run the losses on (default cpu)")
    check.add_argument("--max-failures", type=int, default=5, help="failures shown per loss")
    check.add_argument(
        "--backend",
        choices=("auto", "torch", "formula", "kernel"),
        default="auto",
        help="pin this backend (default auto: what the functional picks on --device); only the "
        "losses that declare it are checked",
    )
    check.set_defaults(func=_cmd_check)

    lst = sub.add_parser("list", help="print the catalogue with each loss's formula")
    lst.add_argument("--family", help="only this family")
    lst.add_argument(
        "--where",
        metavar="NAME",
        help="print file:line of each layer of loss NAME (functional, Module, reference, "
        "registry entry, backends, bench case)",
    )
    lst.set_defaults(func=_cmd_list)

    bench = sub.add_parser(
        "bench", help="time the hot losses against torch, torch.compile and the peers"
    )
    bench.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    from .bench.cases import CASES

    bench.add_argument("--case", help=f"only this case (default: all): {', '.join(CASES)}")
    bench.add_argument("--out", default="bench-out", help="folder for results.md/csv/png")
    bench.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="include torch.compile (auto: on CUDA only)",
    )
    bench.add_argument(
        "--suite",
        choices=("cases", "torch"),
        default="cases",
        help="cases: the hot losses against torch, torch.compile and the peers (default); "
        "torch: every torch mirror against torch's own op, small and large, ratio table",
    )
    bench.add_argument(
        "--rounds", type=int, default=9, help="--suite torch: interleaved rounds per pair"
    )
    bench.set_defaults(func=_cmd_bench)

    demo = sub.add_parser("demo", help="train real models on scikit-learn's digits with losskit")
    demo.add_argument(
        "--quick", action="store_true", help="a short run (under 30 s on 2 CPU cores)"
    )
    demo.add_argument(
        "--seed", type=int, default=0, help="random seed (default 0; deterministic on CPU)"
    )
    demo.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    demo.add_argument(
        "--out", default="losskit-demo", help="folder for the PNG plots (default losskit-demo)"
    )
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # no command: show what there is, rather than argparse's one-line complaint
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
