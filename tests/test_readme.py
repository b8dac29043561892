"""The README's self-contained code examples run as written."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block(section: str) -> str:
    text = README.read_text()
    body = text[text.index(section) :]
    return body.split("```python", 1)[1].split("```", 1)[0]


def test_the_first_example_runs(capsys):
    exec(_python_block("## Example"), {})
    loss, ref = map(float, capsys.readouterr().out.split())
    assert abs(loss - ref) < 1e-5 * max(1.0, abs(ref))


def test_the_custom_loss_example_runs_and_passes_the_check(capsys):
    from losskit import cli

    scope: dict = {}
    exec(_python_block("## Writing your own loss"), scope)
    try:
        assert cli.main(["check", "--loss", "log_cosh_loss"]) == 0
        assert "1 passed, 0 failed" in capsys.readouterr().out
    finally:
        scope["log_cosh_loss"].unregister()
