"""The researcher page: progress, per-arm summary, export download and deletion by participant code.

Protected by a password from ``DERMCHAT_RESEARCHER_PASSWORD``; with the variable unset the page says so and
offers nothing. Every handler checks the session's unlocked flag itself (a hidden button is not protection:
Gradio endpoints can be called directly), and the flag lives in server-side ``gr.State``, which a client
cannot set.
"""

from __future__ import annotations

import hmac
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gradio as gr

from dermchat.engine import DermChat, turns_dir
from dermchat.study.definition import STUDIES_DIR, Study
from dermchat.study.export import export_zip, tables
from dermchat.study.session import FlowError, normalise_code
from dermchat.study.store import get_store, resolve_database_url
from dermchat.study.summary import arm_order_balance, format_table, summarise
from dermchat.study.withdraw import withdraw

PASSWORD_ENV = "DERMCHAT_RESEARCHER_PASSWORD"
LOCKED = "🔒 Enter the researcher password first."
PROGRESS_COLUMNS = ["participant", "seq", "arm_order", "status", "steps_done", "steps_total", "updated_at"]


def password_ok(candidate: str | None) -> bool:
    """Constant-time comparison; a wrong guess costs a second (slows guessing from a script)."""
    expected = os.environ.get(PASSWORD_ENV, "")
    ok = bool(expected) and hmac.compare_digest((candidate or "").encode(), expected.encode())
    if not ok:
        time.sleep(1.0)
    return ok


class ResearcherPage:
    def __init__(self, studies: dict[str, Study], database_url: str | None = None,
                 turns_root: Path | None = None) -> None:
        self.studies = studies
        self.database_url = database_url
        self.turns_root = turns_root  # the engine's turn folders: a withdrawn code's ones are deleted too
        # One folder per page, one zip per study in it: a new export replaces the last (exports hold study data).
        self.export_dir = Path(tempfile.mkdtemp(prefix="dermchat-export-"))
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
            self.export_file = gr.File(label="Export", interactive=False)
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
        text = (f"**{len(rows)} participant(s), {done} finished.**"
                + (f"\n\nFinished / started per arm order: {balance}" if balance else "")
                + f"\n\n```\n{format_table(summarise(self.url_for(study_id), study_id))}\n```")
        return data, text

    def on_export(self, unlocked: bool, study_id: str | None) -> str | None:
        if not unlocked or study_id not in self.studies:
            raise gr.Error(LOCKED if not unlocked else "Choose a study.")
        for old in self.export_dir.glob(f"{study_id}-export-*.zip"):
            old.unlink(missing_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = self.export_dir / f"{study_id}-export-{stamp}.zip"
        return str(export_zip(self.url_for(study_id), target, study_id))

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
        if not done.rows:
            return f"No data recorded under {cleaned}."
        return f"Deleted {done.rows} row(s) and {done.folders} turn folder(s) recorded under {cleaned}."

    def _wire(self) -> None:
        self.unlock_btn.click(self.on_unlock, [self.password], [self.unlocked, self.status, self.panel, self.password],
                              api_name="researcher_unlock")
        self.refresh_btn.click(self.on_refresh, [self.unlocked, self.study], [self.progress, self.summary],
                               api_name="researcher_progress")
        self.study.change(self.on_refresh, [self.unlocked, self.study], [self.progress, self.summary], api_name=False)
        self.export_btn.click(self.on_export, [self.unlocked, self.study], [self.export_file],
                              api_name="researcher_export")
        self.delete_btn.click(self.on_delete, [self.unlocked, self.study, self.delete_code, self.delete_confirm],
                              [self.delete_result], api_name="researcher_delete")


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
        from ui.study import load_studies

        studies, _ = load_studies(study or (app.settings.study if app else None), studies_dir)
    database_url = database_url or getattr(getattr(app, "settings", None), "study_database_url", None)
    return ResearcherPage(studies, database_url, turns_dir(app.settings) if app is not None else None)
