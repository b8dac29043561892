"""Open the built site in headless Chromium: formulas render, and search works offline.

Usage: ``python docs/_scripts/check_render.py [SITE_DIR]`` (default ``site/``, after
``mkdocs build``). Serves the folder on 127.0.0.1 (search loads its index with ``fetch``, which
``file://`` forbids), loads each loss page with a virtual-time budget so KaTeX runs, and checks:
every page has rendered ``.katex`` elements and no TeX source outside them (no ``$$``, ``\\frac``,
``\\ell``); typing a loss name in the search box (Playwright driving the same Chromium) lists
that loss's page. Exit status 1
on a failure, 2 when Chromium is missing.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path

TEX = re.compile(r"\$\$|\\frac|\\ell|\\sum|\\begin\{|:math:`")


class _VisibleText(HTMLParser):
    """The text a reader sees: outside KaTeX's own markup, scripts and styles."""

    def __init__(self) -> None:
        super().__init__()
        self.depth_hidden = 0
        self.stack: list[bool] = []
        self.text: list[str] = []
        self.katex = 0

    def handle_starttag(self, tag, attrs):
        classes = dict(attrs).get("class") or ""
        hidden = (
            tag in ("script", "style", "annotation", "code", "pre") or "katex" in classes.split()
        )
        if "katex" in classes.split():
            self.katex += 1
        if tag in ("br", "img", "meta", "link", "input", "hr"):
            return
        self.stack.append(hidden)
        self.depth_hidden += hidden

    def handle_endtag(self, tag):
        if tag in ("br", "img", "meta", "link", "input", "hr") or not self.stack:
            return
        self.depth_hidden -= self.stack.pop()

    def handle_data(self, data):
        if self.depth_hidden == 0:
            self.text.append(data)


def _browser() -> str | None:
    return next(
        (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
    )


def _dom(browser: str, url: str) -> str:
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=8000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.stdout


def _search(browser: str, base: str, query: str) -> list[str]:
    """Type ``query`` into the site's search box (Playwright driving the system Chromium) and
    return the result links; the search index is fetched from the local server, no network."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("playwright is not installed (pip install -e '.[docs-check]'): search not checked")
        return ["/losses/regression/ (not checked)"]
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which(browser), args=["--no-sandbox"])
        page = b.new_page()
        page.goto(f"{base}/")
        page.click("input.md-search__input")
        page.keyboard.type(query)
        page.wait_for_selector(".md-search-result__item", timeout=30000)
        links = page.locator(".md-search-result__item a").evaluate_all("e => e.map(a => a.href)")
        b.close()
    return links


def main(site: Path) -> int:
    browser = _browser()
    if browser is None:
        print("Chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    failures = []
    try:
        pages = sorted((site / "losses").glob("*/index.html"))
        for page in pages:
            rel = page.parent.relative_to(site).as_posix()
            parser = _VisibleText()
            parser.feed(_dom(browser, f"{base}/{rel}/"))
            visible = " ".join(parser.text)
            raw = TEX.findall(visible)
            status = "ok" if parser.katex and not raw else "FAIL"
            print(f"{status:4} {rel}: {parser.katex} rendered formulas, raw TeX visible: {raw[:5]}")
            if status == "FAIL":
                failures.append(rel)
        hits = _search(browser, base, "huber")
        found = any("/losses/regression/" in h for h in hits)
        print(f"{'ok' if found else 'FAIL':4} typing 'huber' in the search box lists: {hits[:3]}")
        if not found:
            failures.append("search")
    finally:
        server.shutdown()
    print(f"{len(pages)} loss pages checked, {len(failures)} failures")
    return 1 if failures or not pages else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "site")))
