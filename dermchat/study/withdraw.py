"""Withdrawal: erase everything recorded under a participant code, including the turn folders named after it.

Why a module of its own: the database rows are not all. Each study turn writes a folder
``<study>-<code>-<step>-<random hex>`` under the engine's turns folder (derived images of the case photo, heat maps), and a
withdrawn code must not stay behind in file names until the retention clean-up; the command line and the
researcher page both delete through here.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from dermchat.study.store import StudyStore


@dataclass(frozen=True)
class Withdrawal:
    rows: int
    folders: int


def turn_folders(turns_root: Path, study_id: str, code: str) -> list[Path]:
    """The engine's folders for this participant's study turns (``<study>-<code>-<step>-<random hex>``; folders
    of earlier versions have no random part)."""
    if not turns_root.is_dir():
        return []
    name = re.compile(rf"{re.escape(study_id)}-{re.escape(code)}-\d+(-[0-9a-f]{{16}})?")
    return [p for p in turns_root.iterdir() if p.is_dir() and name.fullmatch(p.name)]


def withdraw(store: StudyStore, code: str, study_id: str | None = None, turns_root: Path | None = None) -> Withdrawal:
    """Delete the code's rows (in ``study_id``, or in every study of the store) and its turn folders."""
    studies = [study_id] if study_id else sorted({p["study_id"] for p in store.participants() if p["code"] == code})
    rows = store.delete_participant(code, study_id)
    folders = 0
    if turns_root is not None:
        for study in studies:
            for folder in turn_folders(turns_root, study, code):
                shutil.rmtree(folder, ignore_errors=True)
                folders += 1
    return Withdrawal(rows=rows, folders=folders)
