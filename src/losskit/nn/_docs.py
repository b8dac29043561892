"""Give every Module the argument documentation of the functional it wraps.

A Module's own docstring says "Module form of :func:`losskit.<name>`" plus what it checks; a user
reading ``help(losskit.nn.HuberLoss)`` (or the documentation site) also needs the arguments. At
import, each such Module gets its constructor and call signatures and the functional's ``Args``
section appended to its docstring, so the two never drift apart.
"""

from __future__ import annotations

import importlib
import inspect
import re
import textwrap

import torch

_REFERENCE = re.compile(r":func:`~?(losskit\.[\w.]+)`")
_SECTION = re.compile(
    r"^(Args|Arguments|Returns|Raises|Example|Examples|Edge cases|Shape)\b.*:\s*$"
)
MARK = "Arguments (those of"


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def args_section(doc: str | None) -> str:
    """The ``Args:`` block of a Google-style docstring (its lines, dedented), or ``""``."""
    lines = inspect.cleandoc(doc or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    except StopIteration:
        return ""
    body = []
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break
        body.append(line)
    return textwrap.dedent("\n".join(body)).rstrip()


def _params(fn) -> str:
    try:
        params = list(inspect.signature(fn).parameters.values())[1:]
    except (TypeError, ValueError):
        return "..."
    return ", ".join(str(p.replace(annotation=inspect.Parameter.empty)) for p in params)


def document(cls: type) -> None:
    doc = cls.__doc__ or ""
    if MARK in doc:
        return
    match = _REFERENCE.search(doc)
    functional = _resolve(match.group(1)) if match else None
    args = args_section(getattr(functional, "__doc__", None))
    if not args:
        return
    name = match.group(1)
    cls.__doc__ = (
        inspect.cleandoc(doc)
        + f"\n\n{MARK} :func:`{name}`, which the Module calls: hyper-parameters and tensors"
        f" such as ``weight`` go to the constructor, where they are validated; the call is"
        f" ``criterion({_params(cls.forward)})``.)\n\n"
        + "Args:\n"
        + "\n".join(f"    {line}" if line else "" for line in args.splitlines())
        + "\n"
    )


def document_all() -> None:
    """Document every Module of :mod:`losskit.nn` that wraps a functional."""
    from .. import nn

    for value in vars(nn).values():
        if inspect.isclass(value) and issubclass(value, torch.nn.Module):
            document(value)
