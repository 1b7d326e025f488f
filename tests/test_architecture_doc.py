"""docs/architecture.md is the newcomer's map: it must name real files, every step module and every capability.

A renamed module or a new step that the page does not mention makes these tests fail, so the map cannot drift
from the tree without someone noticing.
"""

from __future__ import annotations

import re
from pathlib import Path

from dermchat.capabilities import CAPABILITIES

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
NAMED_PATHS = sorted(set(re.findall(r"`([\w./-]+(?:\.py|\.md|/))`", PAGE)))


def test_the_page_names_paths() -> None:
    assert len(NAMED_PATHS) > 30


def test_every_path_the_page_names_exists() -> None:
    missing = [p for p in NAMED_PATHS if not (ROOT / p).exists()]
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


def test_every_step_module_is_on_the_page() -> None:
    steps = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "dermchat" / "steps").glob("*.py"))
    unnamed = [s for s in steps if not s.endswith("__init__.py") and s not in NAMED_PATHS]
    assert not unnamed, f"step modules missing from docs/architecture.md: {unnamed}"


def test_every_plugin_module_is_on_the_page() -> None:
    plugins = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "plugins").glob("*.py"))
    unnamed = [p for p in plugins if p not in NAMED_PATHS and p != "plugins/__init__.py"]
    assert not unnamed, f"plugin modules missing from docs/architecture.md: {unnamed}"


def test_every_capability_step_has_a_row_in_the_data_path() -> None:
    rows = {line.split("|")[1].strip() for line in PAGE.splitlines() if line.startswith("| ")}
    missing = [cap.step for cap in CAPABILITIES if cap.step not in rows]
    assert not missing, f"capability steps without a row in docs/architecture.md: {missing}"
