"""Source files hold no control characters: a docstring written through a non-raw string turns
``\\frac`` into a form feed and ``\\tau`` into a tab, which breaks the rendered formula silently."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_control_characters_in_python_sources():
    bad = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        text = path.read_text()
        for ch in ("\x07", "\x08", "\t", "\x0b", "\x0c"):
            if ch in text:
                line = text[: text.index(ch)].count("\n") + 1
                bad.append(f"{path.relative_to(ROOT)}:{line}: {ch!r}")
    assert not bad, bad
