"""The researcher page: progress, per-arm summary, export download and deletion by participant code.

Protected by a password from ``DERMCHAT_RESEARCHER_PASSWORD``; with the variable unset the page says so and
offers nothing. Every handler checks the session's unlocked flag itself (a hidden button is not protection:
Gradio endpoints can be called directly), and the flag lives in server-side ``gr.State``, which a client
cannot set. Wrong passwords are logged (never an IP) and lock the page for everyone with a doubling backoff.

An export is never a file on the server: the zip is built in memory and sent, as a download link holding the
data, only in the answer to the unlocked session (a file handed to Gradio would sit in its cache, served to
anyone with the URL for an hour, and keep a withdrawn participant's rows). Exports that earlier versions left
on disk are deleted when a participant is withdrawn.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import html
import io
import logging
import os
import re
import stat
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr

from dermchat.engine import DermChat, turns_dir
from dermchat.ratelimit import Backoff
from dermchat.study.definition import STUDIES_DIR, Study
from dermchat.study.export import export_zip, tables
from dermchat.study.session import FlowError, normalise_code
from dermchat.study.store import get_store, resolve_database_url
from dermchat.study.summary import arm_order_balance, format_table, summarise
from dermchat.study.withdraw import withdraw
from dermchat_ui.uploads import gradio_cache_dir

log = logging.getLogger(__name__)
PASSWORD_ENV = "DERMCHAT_RESEARCHER_PASSWORD"
LOCKED = "🔒 Enter the researcher password first."
PROGRESS_COLUMNS = ["participant", "seq", "arm_order", "status", "steps_done", "steps_total", "updated_at"]


PASSWORD_BACKOFF = Backoff(threshold=5, base_s=30.0, max_s=3600.0)  # shared by every session: no IPs needed
_LEGACY_EXPORT = re.compile(r"[A-Za-z0-9_.-]+-export-\d{8}T\d{6}Z\.zip")


def password_ok(candidate: str | None) -> bool:
    """Constant-time comparison; a wrong guess costs a second, and repeated ones lock the page for everyone.

    After ``PASSWORD_BACKOFF.threshold`` failures each further one locks for 30 s, doubling up to an hour;
    while locked even the right password is refused (a script cannot keep guessing). Every failure is logged,
    without an IP address.
    """
    wait = PASSWORD_BACKOFF.remaining()
    if wait > 0:
        log.warning("researcher password: attempt refused, the page is locked for %.0f s more", wait)
        time.sleep(1.0)
        return False
    expected = os.environ.get(PASSWORD_ENV, "")
    ok = bool(expected) and hmac.compare_digest((candidate or "").encode(), expected.encode())
    if ok:
        PASSWORD_BACKOFF.succeed()
        return True
    locked_for = PASSWORD_BACKOFF.fail()
    log.warning(
        "failed researcher password attempt (%d in a row)%s",
        PASSWORD_BACKOFF.failures,
        f"; the page is locked for {locked_for:.0f} s" if locked_for else "",
    )
    time.sleep(1.0)
    return False


def export_link(zip_bytes: bytes, filename: str) -> str:
    """A download link that carries the zip itself, so no copy of the export exists on the server."""
    data = base64.b64encode(zip_bytes).decode("ascii")
    name = html.escape(filename, quote=True)
    return (
        f'<a download="{name}" href="data:application/zip;base64,{data}" id="researcher-export-link">'
        f"Download {name} ({len(zip_bytes) / 1024:.0f} KB)</a>"
    )


def purge_saved_exports(study_id: str) -> int:
    """Delete export zips of ``study_id`` that earlier versions left on disk; returns how many went.

    Only files named as the researcher page named them (``<study>-export-<UTC stamp>.zip``), owned by this
    user, in the folders it used: its ``dermchat-export-*`` temp folders and Gradio's per-file cache folders.
    """
    folders = list(Path(tempfile.gettempdir()).glob("dermchat-export-*"))
    cache = gradio_cache_dir()
    folders += [p for p in cache.glob("*") if re.fullmatch(r"[0-9a-f]{64}", p.name)] if cache.is_dir() else []
    removed = 0
    for folder in folders:
        if folder.is_symlink() or not folder.is_dir():
            continue
        for path in folder.glob(f"{study_id}-export-*.zip"):
            info = path.lstat()
            if _LEGACY_EXPORT.fullmatch(path.name) and stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid():
                path.unlink()
                removed += 1
        if folder.name.startswith("dermchat-export-") and not any(folder.iterdir()):
            with contextlib.suppress(OSError):  # something was just written there: not ours to remove
                folder.rmdir()
    return removed


class ResearcherPage:
    def __init__(
        self, studies: dict[str, Study], database_url: str | None = None, turns_root: Path | None = None
    ) -> None:
        self.studies = studies
        self.database_url = database_url
        self.turns_root = turns_root  # the engine's turn folders: a withdrawn code's ones are deleted too
        self.unlocked = gr.State(False)
        gr.Markdown("## Researcher")
        with gr.Row():
            self.password = gr.Textbox(label="Password", type="password", elem_id="researcher-password")
            self.unlock_btn = gr.Button("Unlock", elem_id="researcher-unlock")
        self.status = gr.Markdown(elem_id="researcher-status")
        with gr.Column(visible=False) as self.panel:
            choices = list(studies)
            self.study = gr.Dropdown(choices, value=choices[0] if choices else None, label="Study")
            self.refresh_btn = gr.Button("Refresh progress")
            self.progress = gr.Dataframe(headers=PROGRESS_COLUMNS, interactive=False, label="Participants")
            self.summary = gr.Markdown(elem_id="researcher-summary")
            self.export_btn = gr.Button("Prepare export (zip of CSVs + events.jsonl)")
            self.export_file = gr.HTML(elem_id="researcher-export")
            with gr.Row():
                self.delete_code = gr.Textbox(label="Delete all data of participant code")
                self.delete_confirm = gr.Checkbox(label="Yes, delete it permanently")
                self.delete_btn = gr.Button("Delete", variant="stop")
            self.delete_result = gr.Markdown(elem_id="researcher-delete-result")
        self._wire()

    def url_for(self, study_id: str) -> str:
        study = self.studies[study_id]
        return resolve_database_url(study_id, study.database_url, self.database_url)

    # -- handlers -----------------------------------------------------------------------------------------------
    def on_unlock(self, password: str) -> tuple[Any, ...]:
        ok = password_ok(password)
        return (ok, "Unlocked." if ok else "Wrong password.", gr.update(visible=ok), "")

    def on_refresh(self, unlocked: bool, study_id: str | None) -> tuple[Any, str]:
        if not unlocked or study_id not in self.studies:
            return [], LOCKED if not unlocked else "Choose a study."
        rows = tables(get_store(self.url_for(study_id)), study_id)["participants.csv"]
        data = [[row[col] for col in PROGRESS_COLUMNS] for row in rows]
        done = sum(1 for row in rows if row["status"] == "done")
        balance = arm_order_balance(rows)
        text = (
            f"**{len(rows)} participant(s), {done} finished.**"
            + (f"\n\nFinished / started per arm order: {balance}" if balance else "")
            + f"\n\n```\n{format_table(summarise(self.url_for(study_id), study_id))}\n```"
        )
        return data, text

    def on_export(self, unlocked: bool, study_id: str | None) -> str:
        """The export as a download link holding the zip: sent to this unlocked session only, never on disk."""
        if not unlocked or study_id not in self.studies:
            raise gr.Error(LOCKED if not unlocked else "Choose a study.")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        buffer = io.BytesIO()
        export_zip(self.url_for(study_id), buffer, study_id)
        return export_link(buffer.getvalue(), f"{study_id}-export-{stamp}.zip")

    def on_delete(self, unlocked: bool, study_id: str | None, code: str, confirmed: bool) -> str:
        if not unlocked or study_id not in self.studies:
            return LOCKED if not unlocked else "Choose a study."
        if not confirmed:
            return "Tick the confirmation box to delete."
        try:
            cleaned = normalise_code(code)
        except FlowError as exc:
            return str(exc)
        done = withdraw(get_store(self.url_for(study_id)), cleaned, study_id, self.turns_root)
        exports = purge_saved_exports(study_id)  # older exports on disk still hold the participant's rows
        if not done.rows:
            return f"No data recorded under {cleaned}." + (f" Deleted {exports} saved export(s)." if exports else "")
        return (
            f"Deleted {done.rows} row(s) and {done.folders} turn folder(s) recorded under {cleaned}, "
            f"and {exports} export(s) saved on disk by earlier versions."
        )

    def _wire(self) -> None:
        self.unlock_btn.click(
            self.on_unlock,
            [self.password],
            [self.unlocked, self.status, self.panel, self.password],
            api_name="researcher_unlock",
        )
        self.refresh_btn.click(
            self.on_refresh, [self.unlocked, self.study], [self.progress, self.summary], api_name="researcher_progress"
        )
        self.study.change(
            self.on_refresh, [self.unlocked, self.study], [self.progress, self.summary], api_visibility="private"
        )
        self.export_btn.click(
            self.on_export, [self.unlocked, self.study], [self.export_file], api_name="researcher_export"
        )
        self.delete_btn.click(
            self.on_delete,
            [self.unlocked, self.study, self.delete_code, self.delete_confirm],
            [self.delete_result],
            api_name="researcher_delete",
        )


def build_researcher_tab(
    app: DermChat | None = None,
    study: str | None = None,
    *,
    studies: dict[str, Study] | None = None,
    studies_dir: Path = STUDIES_DIR,
    database_url: str | None = None,
) -> ResearcherPage | None:
    """Mount the researcher page in the current Blocks; disabled (a notice only) when no password is set."""
    if not os.environ.get(PASSWORD_ENV):
        gr.Markdown(f"The researcher page is disabled: set the environment variable `{PASSWORD_ENV}` to enable it.")
        return None
    if studies is None:
        from dermchat_ui.study import load_studies

        studies, _ = load_studies(study or (app.settings.study if app else None), studies_dir)
    database_url = database_url or getattr(getattr(app, "settings", None), "study_database_url", None)
    return ResearcherPage(studies, database_url, turns_dir(app.settings) if app is not None else None)
