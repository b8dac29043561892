"""Turn the reStructuredText bits of losskit's docstrings into Markdown that the site renders.

losskit's docstrings are Google style with a few reST constructs that ``help()`` users read as
they are: ``.. math::`` blocks, ``:math:`x``` and ``:func:`name``` roles. The site renders math
with KaTeX (through ``pymdownx.arithmatex``), so they become ``$$ ... $$`` / ``$ ... $`` and
code spans. Used by the griffe extension (API pages) and by the page generator.
"""

from __future__ import annotations

import re
import textwrap

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj|exc):`~?([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")


def _math_block(lines: list[str], start: int) -> tuple[list[str], int]:
    """The ``.. math::`` directive at ``lines[start]`` as a ``$$`` block; returns (block, next)."""
    line = lines[start]
    indent = len(line) - len(line.lstrip())
    inline = line.strip()[len(".. math::") :].strip()
    body: list[str] = [inline] if inline else []
    i = start + 1
    while i < len(lines) and (
        not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
    ):
        body.append(lines[i])
        i += 1
    while body and not body[-1].strip():
        body.pop()
        i -= 0
    text = textwrap.dedent("\n".join(b for b in body)).strip("\n")
    pad = " " * indent
    block = [f"{pad}$$"] + [f"{pad}{t}" for t in text.splitlines()] + [f"{pad}$$", ""]
    return block, i


def convert(doc: str) -> str:
    """Markdown for one docstring."""
    lines = doc.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].strip().startswith(".. math::"):
            block, i = _math_block(lines, i)
            if out and out[-1].strip():
                out.append("")
            out.extend(block)
            continue
        out.append(lines[i])
        i += 1
    text = "\n".join(out)
    text = _MATH_ROLE.sub(lambda m: f"${m.group(1)}$", text)
    return _ROLE.sub(
        lambda m: f"`{m.group(1).split('.')[-1] if m.group(0).count('~') else m.group(1)}`", text
    )
