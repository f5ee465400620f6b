"""Comments and docs state intent, not history, and every citation the product shows resolves inside
the repository (docs/references.md)."""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

from alerts.catalogue import REFERENCES_PAGE, RULES

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("vitals", "device_drivers", "gateway", "ingest", "storage", "alerts", "api", "vitalgate")
SKIPPED_DIRS = {"node_modules", "dist", "__pycache__"}

# A project issue named in prose: "issue 6", "Issue #6 asks", or a bare "#6". An upstream issue is a
# source and is cited attached to its project ("paho#379", "eclipse/mosquitto#2423").
ISSUE = re.compile(r"\bissues?\s*#?\d+\b|(?<![\w/&])#\d+\b", re.IGNORECASE)
# The story of how the code came to be: numbered passes or sessions, "as before", "once in CI".
ORDINAL = (
    r"(?:second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|\d+(?:st|nd|rd|th))"
)
HISTORY = re.compile(
    rf"\b{ORDINAL}\s+(?:pass|session)\b|\b(?:same\s+)?as\s+before\b|\bbefore\s+pipelining\b|\bonce\s+in\s+CI\b",
    re.IGNORECASE,
)


def prose_files() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*")):
            if SKIPPED_DIRS.isdisjoint(path.relative_to(REPO).parts) and path.suffix in {".py", ".md"}:
                yield path
    yield from sorted((REPO / "docs").rglob("*.md"))


def prose(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of a file's comments and strings (docstrings among them), or of a whole .md file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        yield from enumerate(text.splitlines(), start=1)
        return
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type in (tokenize.COMMENT, tokenize.STRING):
            for offset, line in enumerate(token.string.splitlines()):
                yield token.start[0] + offset, line


def findings(pattern: re.Pattern[str]) -> list[str]:
    found = []
    for path in prose_files():
        lines = list(prose(path))
        if not lines:
            continue
        for (number, line), (_, following) in zip(lines, [*lines[1:], (0, "")], strict=True):
            # A line and the start of the next, so a phrase wrapped at the line end is caught too.
            window = f"{line} {following.strip()[:40]}"
            match = pattern.search(window)
            if match is not None and match.start() < len(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {match.group(0)!r}")
    return sorted(set(found))


# A module a reader can hold in mind; codec tables (one field layout after another, spec order) excepted.
MAX_MODULE_LINES = 500
CODEC_TABLES = ("device_drivers/profiles/",)


def test_every_module_of_the_packages_is_under_500_lines_codec_tables_excepted() -> None:
    """A newcomer can read any module of the eight packages at one sitting (codec tables excepted)."""
    too_long = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if not SKIPPED_DIRS.isdisjoint(path.parts) or relative.startswith(CODEC_TABLES):
                continue
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_MODULE_LINES:
                too_long.append(f"{relative}: {lines} lines")
    assert too_long == []


def test_no_comment_or_doc_names_an_issue_number() -> None:
    """A reader of the code or docs is told what holds, not which issue asked for it."""
    assert findings(ISSUE) == []


def test_no_comment_or_doc_tells_the_story_of_earlier_passes() -> None:
    """Comments and docs state intent; how the code got there is in git, figures in docs/benchmarks.md."""
    assert findings(HISTORY) == []


def reference_anchors() -> set[str]:
    page = (REPO / REFERENCES_PAGE).read_text(encoding="utf-8")
    return set(re.findall(r'<a id="ref-([^"]+)"></a>', page))


def test_every_citation_the_alert_catalogue_shows_resolves_in_docs_references() -> None:
    """A clinician who reads an alert's sources finds each cited key on docs/references.md."""
    anchors = reference_anchors()
    unresolved = []
    for spec in RULES.values():
        keys = re.findall(r"\[([^\]\s]+)\]", spec.citation)
        unresolved.extend(f"{spec.rule_id}: [{key}]" for key in keys if key not in anchors)
    assert unresolved == []
    assert any(re.findall(r"\[[^\]\s]+\]", spec.citation) for spec in RULES.values())


# A reference key in prose: "[30]", "[25a]", "[mosquitto-conf]"; not a Markdown link "[text](url)".
DOC_KEY = re.compile(r"\[([0-9]{1,2}[a-g]?|[a-z][a-z0-9]*(?:-[a-z0-9]+)+)\](?![(:])")
# Notes kept beside the repository, not in it: a reader of the docs cannot open them.
OUTSIDE_FILES = re.compile(
    r"\b(?:DESIGN|clinical-rules|reliability|peers|ble-health-profiles|bluez-vm|style-models|perf-baseline)\.md\b"
)


def test_every_reference_key_the_docs_cite_resolves_in_docs_references() -> None:
    """A reader of any guide finds each cited source key on docs/references.md."""
    anchors = reference_anchors()
    unresolved = [
        f"{path.relative_to(REPO)}:{number}: [{match.group(1)}]"
        for path in sorted((REPO / "docs").rglob("*.md"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        for match in DOC_KEY.finditer(line)
        if match.group(1) not in anchors
    ]
    assert unresolved == []


def test_docs_cite_no_notes_outside_the_repository() -> None:
    """The docs cite sources a reader can open: in-repo pages or public ones, not private notes."""
    assert findings_in_docs(OUTSIDE_FILES) == []


def findings_in_docs(pattern: re.Pattern[str]) -> list[str]:
    return [
        f"{path.relative_to(REPO)}:{number}: {match.group(0)!r}"
        for path in sorted((REPO / "docs").rglob("*.md"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if (match := pattern.search(line)) is not None
    ]
