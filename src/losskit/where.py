"""``losskit list --where NAME``: where each layer of a loss lives, as ``file:line``.

The registry is the index: from a loss's :class:`~losskit._registry.LossInfo` this finds its
functional, Module, NumPy reference, registry entry, each backend of its dispatch record (and the
kernel's refusal rule), and the benchmark cases that time it.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from . import _registry

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _relative(path: str) -> str:
    path = os.path.abspath(path)
    return os.path.relpath(path, _ROOT) if path.startswith(_ROOT + os.sep) else path


def place_of(obj: Any) -> str:
    """``file:line`` of a function or class (through ``functools`` wrappers), or ``?``."""
    target = inspect.unwrap(obj) if callable(obj) else obj
    if not (inspect.isfunction(target) or inspect.isclass(target) or inspect.ismethod(target)):
        target = type(target)
    try:
        path = inspect.getsourcefile(target)
        line = inspect.getsourcelines(target)[1]
    except (OSError, TypeError):
        return "?"
    return f"{_relative(path)}:{line}" if path else "?"


def locate(name: str) -> list[tuple[str, str]]:
    """The ``(layer, file:line)`` pairs of the loss ``name``."""
    info = _registry.get(name)
    rows = [("functional", place_of(info.functional))]
    rows.append(("module", place_of(info.module) if info.module is not None else "-"))
    rows.append(("reference", place_of(info.reference)))
    spec = _registry.registered_at(name)
    rows.append(("spec", f"{_relative(spec[0])}:{spec[1]}" if spec else "?"))
    record = info.dispatch_record
    if record is not None:
        for backend in record.names:
            rows.append((backend, place_of(getattr(record, backend))))
        for backend, rule in record.refuses.items():
            rows.append((f"{backend} rule", place_of(rule)))
    from .bench import cases, parity

    for case in cases.CASES.values():
        if case.loss == name:
            line = _line_of(cases, f'name="{case.name}"')
            rows.append(("bench case", f"{line} (losskit bench --case {case.name})"))
    if any(m.name == name for m in parity.MIRRORS):
        line = _line_of(parity, f'Mirror("{name}"')
        rows.append(("bench", f"{line} (losskit bench --suite torch)"))
    return rows


def _line_of(module: Any, text: str) -> str:
    """``file:line`` of the first line of ``module``'s source containing ``text``."""
    path = inspect.getsourcefile(module) or "?"
    lines, _ = inspect.getsourcelines(module)
    number = next((i for i, line in enumerate(lines, 1) if text in line), 1)
    return f"{_relative(path)}:{number}"
