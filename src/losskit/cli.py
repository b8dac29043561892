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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="losskit", description=__doc__)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
