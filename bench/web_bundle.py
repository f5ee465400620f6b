"""The web app's initial bundle: the JavaScript and CSS a browser loads for index.html before any
view is opened, gzipped, beside the target (< 400 KB gzipped).

"Initial" is what index.html names (module scripts, stylesheets, module preloads) plus the chunks
those scripts import statically, followed to the end; chunks loaded by a route's dynamic import()
(each view, the patient page's charts) and their shared chunks are listed apart: the rest of
assets/, fetched when a view opens.
Reads the build in api/webapp/dist (`./dev test` or `npm run build` in api/webapp makes it). Run:
    .venv/bin/python bench/web_bundle.py [--dist api/webapp/dist]
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

TARGET_GZIP_BYTES = 400 * 1024
DEFAULT_DIST = Path(__file__).resolve().parents[1] / "api" / "webapp" / "dist"
BASE = "/app/"
# Static imports in Vite's minified chunks: `import{a as b}from"./x.js"` and `import"./x.js"`.
STATIC_IMPORT = re.compile(
    r"""(?:\bimport\s*(?:[\w*{}\s,$]+?\s*from\s*)?|\bexport\s*[\w*{}\s,$]*?from\s*)["'`](\./[^"'`]+)["'`]"""
)


class _IndexAssets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.scripts.append(str(a["src"]))
        elif tag == "link" and a.get("href") and a.get("rel") in ("stylesheet", "modulepreload"):
            (self.styles if a.get("rel") == "stylesheet" else self.scripts).append(str(a["href"]))


def _local(dist: Path, url: str) -> Path:
    if not url.startswith(BASE):
        raise SystemExit(f"index.html loads {url} from outside the app")
    return dist / url.removeprefix(BASE)


def initial_files(dist: Path) -> tuple[list[Path], list[Path]]:
    """(initial files, the other JS and CSS files: loaded when a view opens) of the build in `dist`."""
    parser = _IndexAssets()
    parser.feed((dist / "index.html").read_text(encoding="utf-8"))
    initial: list[Path] = [_local(dist, url).resolve() for url in parser.styles]
    queue = [_local(dist, url).resolve() for url in parser.scripts]
    seen: set[Path] = set()
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        initial.append(path)
        text = path.read_text(encoding="utf-8")
        queue.extend((path.parent / rel).resolve() for rel in STATIC_IMPORT.findall(text))
    everything = {p.resolve() for p in (dist / "assets").iterdir() if p.suffix in (".js", ".css")}
    return initial, sorted(everything - {p.resolve() for p in initial})


def gzipped(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=9))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=DEFAULT_DIST)
    args = parser.parse_args(argv)
    dist: Path = args.dist
    if not (dist / "index.html").is_file():
        print(
            f"no build in {dist}: run ./dev test, or npm ci && npm run build in api/webapp", file=sys.stderr
        )
        return 2
    initial, lazy = initial_files(dist)
    print("initial (loaded by index.html):")
    total_raw = total_gz = 0
    for path in initial:
        raw, gz = path.stat().st_size, gzipped(path)
        total_raw += raw
        total_gz += gz
        print(f"  {path.relative_to(dist)!s:48} {raw / 1024:9.1f} KB {gz / 1024:8.1f} KB gzipped")
    verdict = "meets" if total_gz < TARGET_GZIP_BYTES else "MISSES"
    print(
        f"initial JS+CSS: {total_raw / 1024:.1f} KB, {total_gz / 1024:.1f} KB gzipped; "
        f"target < {TARGET_GZIP_BYTES // 1024} KB gzipped: {verdict}"
    )
    print("loaded when a view opens (dynamic import, not initial):")
    for path in lazy:
        print(
            f"  {path.relative_to(dist)!s:48} {path.stat().st_size / 1024:9.1f} KB {gzipped(path) / 1024:8.1f} KB gzipped"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
