"""The documentation site builds with ``mkdocs build --strict`` and covers every registered loss.

Skipped when the ``[docs]`` extra is not installed. The build vendors KaTeX from the npm registry
the first time (``docs/_scripts/hooks.py``); the rendered pages are checked in a real browser by
``docs/_scripts/check_render.py`` (needs Chromium; run by hand or in CI where it is installed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocs_gen_files")
    if shutil.which("npm") is None and not os.environ.get("LOSSKIT_KATEX_DIR"):
        pytest.skip("npm is needed to vendor KaTeX")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "DISABLE_MKDOCS_2_WARNING": "true", "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out


def test_every_registered_loss_has_a_section(site):
    from losskit._registry import all_losses

    html = "".join(p.read_text() for p in (site / "losses").rglob("*.html"))
    missing = [
        i.name
        for i in all_losses()
        if not i.family.startswith("_") and f'id="{i.name.lower().replace("_", "-")}"' not in html
    ]
    assert not missing, missing
    catalogue = (site / "catalogue" / "index.html").read_text()
    rows = re.findall(r"<tr>\s*<td><a href=", catalogue)
    assert len(rows) == len([i for i in all_losses() if not i.family.startswith("_")])


def test_math_is_marked_for_katex_and_katex_is_served_locally(site):
    page = (site / "losses" / "regression" / "index.html").read_text()
    assert 'class="arithmatex"' in page
    assert ".. math::" not in page and ":math:`" not in page
    assert (site / "assets" / "katex" / "katex.min.js").exists()
    assert (site / "assets" / "katex" / "fonts").is_dir()
    # Nothing the pages load comes from another host (the site works offline).
    index = (site / "index.html").read_text()
    assert not re.search(r'<script[^>]+src="(https?:)?//', index)
    assert not re.search(r'<link[^>]+rel="stylesheet"[^>]+href="(https?:)?//', index)
    assert "fonts.googleapis" not in index


def test_modules_show_their_arguments(site):
    page = (site / "losses" / "regression" / "index.html").read_text()
    section = page[page.index('id="losskit.nn.regression.HuberLoss"') :]
    assert "delta" in section[:20000] and "reduction" in section[:20000]


def test_conformance_page_is_generated_from_losskit_check(site):
    page = (site / "conformance" / "index.html").read_text()
    assert re.search(r"\d+ losses, \d+ cases: \d+ passed, 0 failed", page)
