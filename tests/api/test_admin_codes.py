"""The administration's refusal codes: each one the domain raises is an API error code, and the web app
words each of them in English and Chinese."""

from __future__ import annotations

import re
from pathlib import Path

from api.errors import ErrorCode

REPO = Path(__file__).resolve().parents[2]
DOMAIN = REPO / "storage" / "clinic" / "administration"
LOCALES = [REPO / "api" / "webapp" / "src" / "locales" / name for name in ("admin.en.ts", "admin.zh-CN.ts")]


def _raised() -> set[str]:
    return {
        code
        for module in DOMAIN.glob("*.py")
        for code in re.findall(r'"(admin\.[a-z_]+)"', module.read_text(encoding="utf-8"))
    }


def _worded(locale: Path) -> set[str]:
    """The keys of the `errors` block of a locale file (one `key: "text",` a line)."""
    text = locale.read_text(encoding="utf-8")
    block = text[text.index("  errors: {") : text.index("\n  },", text.index("  errors: {"))]
    return {f"admin.{key}" for key in re.findall(r"^    (\w+): ", block, re.MULTILINE)}


def test_every_code_the_administration_raises_is_an_api_error_code_and_worded() -> None:
    """No refusal reaches the web app as a code it has no words for, in either language."""
    codes = {c.value for c in ErrorCode if c.value.startswith("admin.")}
    assert _raised() == codes
    for locale in LOCALES:
        assert _worded(locale) == codes, locale.name
