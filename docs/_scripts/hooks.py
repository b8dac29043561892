"""MkDocs hooks: vendor KaTeX from the npm registry before the build (no CDN at view time).

The copy lands in ``docs/assets/katex/`` (git-ignored) and is reused by later builds. It needs
``npm`` on the PATH the first time; ``LOSSKIT_KATEX_DIR`` may point at an unpacked ``katex``
package instead (its ``dist/`` folder is copied).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

KATEX_VERSION = "0.16.22"
_FILES = ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js")


def _dist() -> Path:
    given = os.environ.get("LOSSKIT_KATEX_DIR")
    if given:
        return Path(given) / "dist"
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("building the docs needs npm (to vendor KaTeX) or LOSSKIT_KATEX_DIR")
    prefix = Path(tempfile.mkdtemp(prefix="losskit-katex-"))
    subprocess.run(
        [
            npm,
            "install",
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--silent",
            "--prefix",
            str(prefix),
            f"katex@{KATEX_VERSION}",
        ],
        check=True,
    )
    return prefix / "node_modules" / "katex" / "dist"


def on_pre_build(config, **kwargs) -> None:
    target = Path(config["docs_dir"]) / "assets" / "katex"
    if all((target / f).exists() for f in _FILES) and (target / "fonts").is_dir():
        return
    dist = _dist()
    target.mkdir(parents=True, exist_ok=True)
    for f in _FILES:
        (target / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(dist / f, target / f)
    shutil.copytree(dist / "fonts", target / "fonts", dirs_exist_ok=True)
