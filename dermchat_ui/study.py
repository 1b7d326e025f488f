"""The participant pages of study mode (Gradio): consent -> code -> cases -> questionnaires -> thank you.

A thin adapter over ``dermchat.study.session.StudyFlow``: every handler turns one click into one flow call and
re-renders the page from the returned state. Each study in ``studies/`` gets its own page (static components
with that study's questions); the ``study`` setting or the ``?study=<id>`` URL parameter picks which one is
shown. Nothing is read from the request except that parameter (and the user agent, only if the study
declares it): no IP address ever reaches the store.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.context import Context
from PIL import Image

from dermchat.engine import DermChat
from dermchat.intake import decode_image
from dermchat.render import reference_caption, render
from dermchat.results import TurnResult
from dermchat.study.definition import (
    STUDIES_DIR,
    ChoiceItem,
    Item,
    LikertItem,
    Study,
    StudyDefinitionError,
    load_study,
    study_path,
)
from dermchat.study.session import FlowError, ParticipantState, StudyFlow
from dermchat.study.store import resolve_database_url

log = logging.getLogger(__name__)
STUDY_RATINGS = {"Helpful": "up", "Not helpful": "down", "Wrong or unsafe": "flag"}
NO_STUDY = (
    "No study is running on this page. If you were invited to a study, please use the link you were given "
    "(it ends in `?study=...`)."
)


def _item_component(item: Item, prefix: str) -> gr.components.Component:
    """One input per question; ``elem_id`` makes the page scriptable in browser tests."""
    elem_id = f"{prefix}-{item.id}"
    if isinstance(item, LikertItem):
        return gr.Radio(item.choices(), label=item.text, elem_id=elem_id)
    if isinstance(item, ChoiceItem):
        return gr.Radio(item.options(), label=item.text, elem_id=elem_id)
    return gr.Textbox(
        label=item.text + ("" if item.required else " (optional)"), lines=3, max_length=item.max_chars, elem_id=elem_id
    )


class StudyPage:
    """The components and handlers of one study."""

    def __init__(self, study: Study, flow: StudyFlow, app: DermChat, visible: bool) -> None:
        self.study = study
        self.flow = flow
        self.app = app
        sid = study.id
        with gr.Column(visible=visible, elem_id=f"study-{sid}") as self.root:
            self.state = gr.State(None)
            gr.Markdown(f"## {study.title}")
            self.error = gr.Markdown(elem_id=f"{sid}-error")
            # Where the participant is ("case:case_nv", "questionnaire:block", "done"): API clients and browser
            # tests read it, since layout visibility is not part of Gradio's API output.
            self.stage = gr.Textbox(visible=False, elem_id=f"{sid}-stage")
            with gr.Column(visible=True) as self.consent_col:
                gr.Markdown(study.consent)
                self.agree = gr.Checkbox(
                    label="I have read the information above and agree to take part.", elem_id=f"{sid}-agree"
                )
                with gr.Row():
                    self.consent_btn = gr.Button("Continue", variant="primary", elem_id=f"{sid}-consent")
                    self.decline_btn = gr.Button("I do not want to take part", elem_id=f"{sid}-decline")
            with gr.Column(visible=False) as self.declined_col:
                gr.Markdown("You chose not to take part. **Nothing was recorded.** You can close this page.")
            with gr.Column(visible=False) as self.code_col:
                gr.Markdown(
                    "You will get a **participant code**. Write it down: it lets you continue later (after a "
                    "refresh or a lost connection) and lets the researcher delete your data. "
                    "Please never enter your name."
                )
                self.new_code_btn = gr.Button(
                    "Give me a new participant code", variant="primary", elem_id=f"{sid}-new-code"
                )
                self.code_box = gr.Textbox(
                    label="…or enter the code you were given, or your code to continue",
                    placeholder="e.g. K7PQ-4XRM",
                    elem_id=f"{sid}-code",
                )
                self.code_btn = gr.Button("Continue with this code", elem_id=f"{sid}-enter-code")
            with gr.Column(visible=False) as self.case_col:
                self.case_header = gr.Markdown(elem_id=f"{sid}-case-header")
                with gr.Row():
                    self.case_image = gr.Image(label="The photo", type="pil", interactive=False, height=300)
                    with gr.Column():
                        self.answer = gr.Markdown("DermChat is looking at the photo…", elem_id=f"{sid}-answer")
                        self.gallery = gr.Gallery(
                            label="Reference images",
                            columns=3,
                            height=220,
                            visible=False,
                            interactive=False,
                            elem_id=f"{sid}-references",
                        )
                        self.sources = gr.Radio(
                            [], label="Sources — choose one to open it", visible=False, elem_id=f"{sid}-sources"
                        )
                        self.source_link = gr.Markdown(elem_id=f"{sid}-source-link")
                        with gr.Group(elem_id=f"{sid}-feedback"):
                            self.rating = gr.Radio(
                                list(STUDY_RATINGS), label="Rate DermChat's answer (optional)", elem_id=f"{sid}-rating"
                            )
                            self.feedback_comment = gr.Textbox(
                                label="Comment on the answer (optional)",
                                max_lines=3,
                                max_length=2000,
                                elem_id=f"{sid}-feedback-comment",
                            )
                            self.feedback_btn = gr.Button("Send feedback", size="sm", elem_id=f"{sid}-send-feedback")
                        self.feedback_note = gr.Markdown(elem_id=f"{sid}-feedback-note")
                self.case_inputs = [_item_component(item, f"{sid}-case") for item in study.case_questions]
                self.case_btn = gr.Button("Next", variant="primary", interactive=False, elem_id=f"{sid}-next-case")
            self.q_cols: dict[str, gr.Column] = {}
            self.q_headers: dict[str, gr.Markdown] = {}
            self.q_inputs: dict[str, list[gr.components.Component]] = {}
            self.q_btns: dict[str, gr.Button] = {}
            for questionnaire in study.questionnaires:
                with gr.Column(visible=False) as col:
                    self.q_headers[questionnaire.id] = gr.Markdown()
                    self.q_inputs[questionnaire.id] = [
                        _item_component(item, f"{sid}-{questionnaire.id}") for item in questionnaire.items
                    ]
                    self.q_btns[questionnaire.id] = gr.Button(
                        "Continue", variant="primary", elem_id=f"{sid}-submit-{questionnaire.id}"
                    )
                self.q_cols[questionnaire.id] = col
            with gr.Column(visible=False) as self.done_col:
                self.done_md = gr.Markdown(elem_id=f"{sid}-done")
        self._wire()

    # -- rendering -------------------------------------------------------------------------------------------
    @property
    def page_outputs(self) -> list[Any]:
        outs: list[Any] = [
            self.state,
            self.stage,
            self.error,
            self.consent_col,
            self.declined_col,
            self.code_col,
            self.case_col,
            self.case_header,
            self.case_image,
            self.answer,
            self.gallery,
            self.sources,
            self.source_link,
            self.case_btn,
            self.done_col,
            self.done_md,
            self.code_box,
            self.rating,
            self.feedback_comment,
            self.feedback_note,
        ]
        outs += self.case_inputs
        for qid in self.q_cols:
            outs += [self.q_cols[qid], self.q_headers[qid], *self.q_inputs[qid]]
        return outs

    def view(self, state: ParticipantState, error: str = "") -> dict[Any, Any]:
        """Every component of the page for ``state`` (fresh inputs on each new step)."""
        stage = state.stage
        step = state.current
        out: dict[Any, Any] = {
            self.state: state,
            self.stage: f"{stage}:{step.ref}" if step is not None else stage,
            self.error: f"⚠️ {error}" if error else "",
            self.consent_col: gr.update(visible=stage == "consent"),
            self.declined_col: gr.update(visible=stage == "declined"),
            self.code_col: gr.update(visible=stage == "code"),
            self.case_col: gr.update(visible=stage == "case"),
            self.done_col: gr.update(visible=stage == "done"),
            self.done_md: f"{self.study.thank_you}\n\nYour participant code: **{state.code}**"
            if stage == "done"
            else "",
            self.code_box: gr.Textbox(value=""),
            self.rating: None,
            self.feedback_comment: "",
            self.feedback_note: "",
        }
        for qid in self.q_cols:
            active = stage == "questionnaire" and step is not None and step.ref == qid
            out[self.q_cols[qid]] = gr.update(visible=active)
            out[self.q_headers[qid]] = self._questionnaire_header(state) if active else ""
            for comp in self.q_inputs[qid]:
                out[comp] = None if isinstance(comp, gr.Radio) else ""
        for comp in self.case_inputs:
            out[comp] = None if isinstance(comp, gr.Radio) else ""
        if stage == "case":
            view = self.flow.case_view(state)
            out[self.case_header] = f"### Case {view.position} of {view.total}\n" + (
                f"Your participant code: **{state.code}**. To continue later, enter this key (shown only now, "
                f"please write it down): **{state.resume_key}**"
                if state.resume_key
                else f"Your participant code: **{state.code}** (write it down to continue later)."
            )
            out[self.case_image] = decode_image(view.image_path).image
            out[self.answer] = "DermChat is looking at the photo…"
            out[self.gallery] = gr.Gallery(value=[], visible=False)
            out[self.sources] = gr.Radio(choices=[], value=None, visible=False)
            out[self.source_link] = ""
            out[self.case_btn] = gr.Button(interactive=False)
        return out

    def _questionnaire_header(self, state: ParticipantState) -> str:
        step = state.current
        assert step is not None
        questionnaire = self.study.questionnaire(step.ref)
        title = questionnaire.title or "Questions"
        if questionnaire.when == "after_arm":
            blocks = len({s.block for s in state.steps if s.kind == "case"})
            title += f" (part {step.block + 1} of {blocks})"
        return f"### {title}\n{questionnaire.intro}".strip()

    def _attempt(self, state: ParticipantState, action: Any) -> dict[Any, Any]:
        try:
            return self.view(action())
        except FlowError as exc:
            return {self.state: state, self.error: f"⚠️ {' '.join(exc.messages)}"}

    # -- handlers ----------------------------------------------------------------------------------------------
    def _state(self, state: ParticipantState | None) -> ParticipantState:
        return state if state is not None else self.flow.start()

    def on_consent(self, agreed: bool, state: ParticipantState | None) -> dict[Any, Any]:
        state = self._state(state)
        if not agreed:
            return {self.state: state, self.error: "⚠️ Please tick the box to agree, or choose not to take part."}
        return self._attempt(state, lambda: self.flow.consent(state, True))

    def on_decline(self, state: ParticipantState | None) -> dict[Any, Any]:
        state = self._state(state)
        return self._attempt(state, lambda: self.flow.consent(state, False))

    def on_code(self, code: str | None, state: ParticipantState | None, request: gr.Request) -> dict[Any, Any]:
        state = self._state(state)
        agent = request.headers.get("user-agent") if (request and self.study.privacy.record_user_agent) else None
        return self._attempt(state, lambda: self.flow.enter_code(state, code, user_agent=agent))

    def on_new_code(self, state: ParticipantState | None, request: gr.Request) -> dict[Any, Any]:
        return self.on_code(None, state, request)

    def on_run_case(self, state: ParticipantState | None) -> Iterator[dict[Any, Any]]:
        """Stream the real pipeline's steps, then show the rendered answer under the arm's settings."""
        if state is None or state.stage != "case":
            return
        result: TurnResult | None = None
        progress: list[str] = []
        try:
            for event in self.flow.run_case(state, self.app):
                if event.kind == "result":
                    result = event.result
                elif event.kind in {"start", "progress"} and event.message:
                    progress.append(event.message)
                    yield {self.answer: "⏳ " + progress[-1] + "…"}
        except FlowError as exc:  # e.g. the code was deleted while this page was open
            yield {self.answer: "", self.error: f"⚠️ {' '.join(exc.messages)}"}
            return
        except Exception as exc:  # the participant gets a message; the log gets the detail
            log.exception("study turn failed")
            yield {
                self.answer: "Sorry, something went wrong while preparing this answer. Please tell the researcher.",
                self.error: f"⚠️ {type(exc).__name__}",
            }
            return
        assert result is not None
        yield self._answer_updates(state, result)

    def _answer_updates(self, state: ParticipantState, result: TurnResult) -> dict[Any, Any]:
        step = state.current
        assert step is not None and step.arm is not None
        arm_settings = self.app.settings_for(self.study.arm(step.arm).settings or None)
        gallery = [
            (Image.open(ref.path), reference_caption(ref, audience=result.audience))
            for ref in result.references
            if Path(ref.path).is_file()
        ]
        citations = result.explanation.citations if result.explanation else []
        titles = [f"{c.marker} {c.title}" for c in citations]
        # Sources are listed as a clickable list below the answer (so opening one can be logged), not as links.
        shown = (
            result.model_copy(update={"explanation": result.explanation.model_copy(update={"citations": []})})
            if result.explanation
            else result
        )
        return {
            self.answer: render(shown, result.audience, html=True),
            self.gallery: gr.Gallery(value=gallery, visible=arm_settings.show_references and bool(gallery)),
            self.sources: gr.Radio(choices=titles, value=None, visible=arm_settings.show_citations and bool(titles)),
            self.case_btn: gr.Button(interactive=True),
        }

    def on_reference_click(self, state: ParticipantState | None, evt: gr.SelectData) -> None:
        if state is None or state.stage != "case":
            return
        result = self.flow.shown_turn(state)
        index = int(evt.index) if isinstance(evt.index, int) else int(evt.index[0])
        if result is None or not 0 <= index < len(result.references):
            return
        ref = result.references[index]
        try:
            self.flow.click(
                state,
                "reference",
                index,
                {"condition_id": ref.condition_id, "synthetic": ref.synthetic, "provenance": ref.provenance},
            )
        except FlowError:
            return  # the code was deleted meanwhile: the click is simply not recorded

    def on_source_click(self, choice: str | None, state: ParticipantState | None) -> str:
        if state is None or state.stage != "case" or not choice:
            return ""
        result = self.flow.shown_turn(state)
        citations = result.explanation.citations if result and result.explanation else []
        for index, cite in enumerate(citations):
            if f"{cite.marker} {cite.title}" == choice:
                with contextlib.suppress(FlowError):  # the code was deleted meanwhile: show the source, record nothing
                    self.flow.click(state, "citation", index, {"source_id": cite.source_id, "url": cite.url})
                return f"Open the source: [{cite.title}]({cite.url})"
        return ""

    def on_feedback(self, rating: str | None, comment: str | None, state: ParticipantState | None) -> str:
        """The participant's rating of the current answer, logged in the study database (not the app's)."""
        if state is None or state.stage != "case":
            return ""
        if not rating:
            return "⚠️ Choose a rating first."
        try:
            self.flow.feedback(state, STUDY_RATINGS[rating], comment)
        except FlowError as exc:
            return f"⚠️ {' '.join(exc.messages)}"
        return "Thank you — your feedback was saved."

    def on_submit(self, state: ParticipantState | None, *values: Any) -> dict[Any, Any]:
        """Answers of the current step (case questions or one questionnaire), in the order of its items."""
        state = self._state(state)
        items = self.flow.items(state)
        answers = {item.id: value for item, value in zip(items, values)}
        return self._attempt(state, lambda: self.flow.submit(state, answers))

    # -- wiring ---------------------------------------------------------------------------------------------------
    def _wire(self) -> None:
        sid, outs = self.study.id, self.page_outputs
        case_outs = [self.answer, self.gallery, self.sources, self.case_btn, self.error]

        def then_case(dep: Any) -> None:
            dep.then(self.on_run_case, [self.state], case_outs, api_visibility="private")

        self.consent_btn.click(self.on_consent, [self.agree, self.state], outs, api_name=f"{sid}_consent")
        self.decline_btn.click(self.on_decline, [self.state], outs, api_name=f"{sid}_decline")
        then_case(self.new_code_btn.click(self.on_new_code, [self.state], outs, api_name=f"{sid}_new_code"))
        then_case(self.code_btn.click(self.on_code, [self.code_box, self.state], outs, api_name=f"{sid}_enter_code"))
        then_case(
            self.case_btn.click(self.on_submit, [self.state, *self.case_inputs], outs, api_name=f"{sid}_submit_case")
        )
        for qid, button in self.q_btns.items():
            then_case(
                button.click(self.on_submit, [self.state, *self.q_inputs[qid]], outs, api_name=f"{sid}_submit_{qid}")
            )
        self.gallery.select(self.on_reference_click, [self.state], None, api_visibility="private")
        self.feedback_btn.click(
            self.on_feedback,
            [self.rating, self.feedback_comment, self.state],
            [self.feedback_note],
            api_name=f"{sid}_feedback",
        )
        self.sources.input(
            self.on_source_click, [self.sources, self.state], [self.source_link], api_name=f"{sid}_open_source"
        )
        # For API clients (and tests): run or replay the current case explicitly.
        gr.Button(visible=False).click(self.on_run_case, [self.state], case_outs, api_name=f"{sid}_run_case")


def load_studies(selected: str | None = None, studies_dir: Path = STUDIES_DIR) -> tuple[dict[str, Study], str | None]:
    """Every valid study in ``studies_dir`` plus the selected one (id, name or YAML path), and the selected id.

    The selected study is loaded strictly: a malformed file stops the app with its line. A broken *other*
    file in the folder is logged with its line and left out, so one bad example cannot take the chat down.
    """
    studies: dict[str, Study] = {}
    selected_id = None
    if selected:
        study = load_study(study_path(selected, studies_dir))
        studies[study.id] = study
        selected_id = study.id
    for path in sorted(studies_dir.glob("*.y*ml")) if studies_dir.is_dir() else []:
        try:
            study = load_study(path)
        except StudyDefinitionError as exc:
            log.error("study not available: %s", exc)
            continue
        studies.setdefault(study.id, study)
    return studies, selected_id


def build_study_tab(
    app: DermChat,
    study: str | None = None,
    *,
    studies: dict[str, Study] | None = None,
    studies_dir: Path = STUDIES_DIR,
    database_url: str | None = None,
) -> dict[str, StudyPage]:
    """Mount the participant pages in the current Blocks; ``study`` (id or YAML path) is shown by default."""
    selected = study or app.settings.study
    database_url = database_url or getattr(app.settings, "study_database_url", None)  # once Settings has it
    if studies is None:
        studies, default_id = load_studies(selected, studies_dir)
    else:
        default_id = selected if selected in studies else None
    none_md = gr.Markdown(NO_STUDY, visible=default_id is None, elem_id="study-none")
    pages: dict[str, StudyPage] = {}
    for sid, definition in studies.items():
        url = resolve_database_url(sid, definition.database_url, database_url)
        pages[sid] = StudyPage(definition, StudyFlow(definition, url), app, visible=sid == default_id)

    def choose(request: gr.Request) -> dict[Any, Any]:
        wanted = request.query_params.get("study") if request else None
        show = wanted if wanted in pages else default_id  # a sealed study page ignores links to other studies
        updates: dict[Any, Any] = {none_md: gr.Markdown(visible=show is None)}
        for sid, page in pages.items():
            updates[page.root] = gr.update(visible=sid == show)
        return updates

    root = Context.root_block
    if root is not None and pages:
        root.load(choose, None, [none_md, *(p.root for p in pages.values())], api_visibility="private")
    return pages


def build_study_app(app: DermChat, study: str | None = None, **kwargs: Any) -> gr.Blocks:
    """The participant pages alone (a study-only deployment, and the tests)."""
    with gr.Blocks(title="DermChat study") as demo:
        build_study_tab(app, study, **kwargs)
    return demo
