"""The docs that are generated from code stay in step with it."""

from __future__ import annotations

import re
from pathlib import Path

from aiconsole.keymap import KEY_SPECS

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_keybindings_page_lists_every_binding_with_its_default_keys() -> None:
    page = (DOCS / "keybindings.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| `([^`]+)` \|", page, flags=re.MULTILINE))
    assert rows == {spec.id: spec.keys for spec in KEY_SPECS}


def test_docs_named_by_the_brief_exist() -> None:
    for name in ("architecture.md", "configuration.md", "keybindings.md", "performance.md"):
        assert (DOCS / name).stat().st_size > 500, name
