"""The chat tab: a thin Gradio adapter over ``DermChat.run_turn``.

Each step of the turn appears as a collapsible "thought" message (title + pending/done status) while it
runs; the final answer is the rendered ``TurnResult``, and the side panel shows the same result as cards.
Session state is plain data (the last result as JSON, image path, shown reference ids), never models.
"""

from __future__ import annotations

from typing import Any, Iterator

import gradio as gr

from dermchat.capabilities import STEP_TITLES
from dermchat.engine import DermChat
from dermchat.feedback.record import FLAG_LABEL, FeedbackError, feedback_fields, rating_from_like
from dermchat.feedback.store import FeedbackStore
from dermchat.intake import choose_image
from dermchat.references.gallery import build_gallery
from dermchat.render import reference_caption, render, render_quality, source_links, triage_line
from dermchat.results import TurnResult
from dermchat.vocabulary import get_vocabulary
from dermchat_ui.details import BODY_SITES, patient_details
from dermchat_ui.uploads import sanitize_upload

RETAKE_WAITING = (
    "Your last photo wasn't clear enough for me to look at, so I can't say anything about that spot yet. "
    "Please retake it, or choose 'Continue anyway' to use it as it is. Telling me more about the spot also helps."
)
IMAGE_TYPES = [".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".gif", ".bmp", ".tif", ".tiff"]


def new_state() -> dict[str, Any]:
    return {
        "result": None,  # last TurnResult with a diagnosis, as JSON (follow-ups talk about it)
        "last": None,  # the very last TurnResult as JSON (re-rendered on audience switch)
        "image": None,  # stripped copy of the last photo (for "continue anyway")
        "pending_image": None,
        "pending_text": "",
        "pending_error": None,
        "seen": [],
        "answer_index": None,
        "retake": False,  # the last photo is waiting for a retake or "continue anyway"
        "overrides": {},
        "answers": {},  # chat index of each answer -> what feedback on it records (result id, providers, tier)
        "feedback": {},  # chat index of a rated answer -> its feedback row id (a new rating updates that row)
        "feedback_on": None,  # the answer the comment box is about
    }


class ChatTab:
    """Builds the components and wires the events of the chat tab for one ``DermChat`` app."""

    def __init__(self, app: DermChat, feedback: FeedbackStore | None = None) -> None:
        self.app = app
        self.vocab = get_vocabulary()
        self._feedback = feedback

    @property
    def feedback_store(self) -> FeedbackStore:
        """Opened on the first rating, so a page nobody rates never creates the feedback file."""
        if self._feedback is None:
            self._feedback = FeedbackStore()
        return self._feedback

    # -- layout --------------------------------------------------------------------------------------------
    def build(self) -> None:
        self.state = gr.State(new_state())
        with gr.Row():
            with gr.Column(scale=3):
                self.audience = gr.Radio(
                    ["patient", "clinician"], value=self.app.settings.audience, label="I am a", elem_id="audience"
                )
                # The height follows the screen so the message box is in view when the page opens (desktop and
                # phone); every answer can be rated (thumbs, or flagged as wrong or unsafe).
                self.chatbot = gr.Chatbot(
                    label="DermChat", height="min(560px, 42vh)", min_height=220, elem_id="chatbot",
                    buttons=["copy"], feedback_options=("Like", "Dislike", FLAG_LABEL),
                    placeholder="**Attach a close, well-lit photo of the skin below and ask a question.**",
                )
                self.message = gr.MultimodalTextbox(
                    file_types=IMAGE_TYPES, file_count="multiple", sources=["upload"], elem_id="message",
                    placeholder="Ask a question, attach a photo…", show_label=False,
                )
                with gr.Group(visible=False, elem_id="feedback-comment") as self.comment_group:
                    self.comment = gr.Textbox(label="Thanks for rating this answer. Anything to add? (optional)",
                                              max_lines=4, max_length=2000, elem_id="feedback-comment-text")
                    self.comment_btn = gr.Button("Send comment", size="sm", elem_id="feedback-comment-send")
                with gr.Row():
                    self.continue_btn = gr.Button("Continue anyway", visible=False, elem_id="continue-anyway")
                    self.clear_btn = gr.Button("New conversation", variant="secondary")
                with gr.Accordion("About the spot (optional)", open=False, elem_id="patient-details"):
                    gr.Markdown("Age, sex and where the spot is help the offline model weigh what it sees. "
                                "Leave any of them empty if you prefer.")
                    with gr.Row():
                        # No minimum/maximum here: Gradio would refuse the whole turn over a typo (age 500) and
                        # leave the message box locked; the core names a detail it cannot use in a notice.
                        self.age = gr.Number(label="Age (years)", precision=0, elem_id="patient-age")
                        self.sex = gr.Dropdown(["not given", "female", "male"], value="not given", label="Sex",
                                               elem_id="patient-sex")
                        self.site = gr.Dropdown(BODY_SITES, value=None, label="Body site", allow_custom_value=True,
                                                elem_id="patient-site")
                with gr.Accordion("Compare with an earlier photo", open=False, elem_id="compare-earlier"):
                    gr.Markdown("Add an older photo of the same spot, then send a new one: the answer says whether "
                                "it grew or changed colour. Take both the same way (distance, angle, light).")
                    self.earlier = gr.Image(type="filepath", sources=["upload"], label="Earlier photo of the same spot",
                                            height=160, elem_id="earlier-photo")
            with gr.Column(scale=2):
                self.triage = gr.Markdown(elem_id="triage-badge")
                # No heading: Gradio's large top-class title ("Melanoma ✓") reads as a verdict, while the answer
                # says "likely one of" and the bars already show the ranking.
                self.differential = gr.Label(label="Differential (calibrated probabilities)", num_top_classes=7,
                                             elem_id="differential", show_heading=False)
                self.pred_set = gr.Markdown(elem_id="prediction-set")
                self.quality = gr.Markdown(elem_id="quality-card")
                self.heatmap = gr.Image(label="What drove the prediction (clinician view)", visible=False, interactive=False)
                self.gallery = gr.Gallery(label="Reference images", columns=3, height=260, elem_id="references", interactive=False)
                self.contrast = gr.Markdown(elem_id="contrast")
                self.citations = gr.Markdown(elem_id="citations")
        self.panel = [self.triage, self.differential, self.pred_set, self.quality, self.heatmap, self.gallery,
                      self.contrast, self.citations, self.continue_btn]

    def wire(self, settings_state: gr.State | None = None) -> None:
        outputs = [self.chatbot, self.state, *self.panel]
        inputs = [self.chatbot, self.state, self.audience, self.age, self.sex, self.site, self.earlier] + (
            [settings_state] if settings_state is not None else [])
        submitted = self.message.submit(
            self.add_message, [self.chatbot, self.message, self.state], [self.chatbot, self.message, self.state], queue=False
        )
        submitted.then(self.respond, inputs, outputs, api_name="respond").then(
            lambda: gr.MultimodalTextbox(value=None, interactive=True), None, [self.message]
        )
        # While a turn runs, "Continue anyway" is hidden: a click then would start a second turn over the same
        # conversation state (the result that finishes last would overwrite the other). The result shows it again
        # when the photo still waits for a retake.
        self.message.submit(lambda: gr.Button(visible=False), None, [self.continue_btn], queue=False)
        self.continue_btn.click(self.continue_anyway, inputs, outputs, api_name="continue_anyway")
        self.chatbot.like(self.on_like, [self.chatbot, self.state], [self.state, self.comment_group, self.comment], queue=False,
                          api_name=False)
        self.comment_btn.click(self.on_comment, [self.comment, self.state], [self.state, self.comment_group, self.comment],
                               queue=False, api_name=False)
        self.audience.change(self.rerender, [self.chatbot, self.state, self.audience], outputs)
        self.earlier.upload(self.strip_earlier, [self.earlier], [self.earlier], queue=False)
        # A new conversation may be about someone else: the details about the spot start empty too, or the next
        # photo would be weighed with the last person's age, sex and body site without anyone noticing.
        self.clear_btn.click(lambda: ([], new_state(), *self.empty_panel(), None, "not given", None, None), None,
                             [*outputs, self.age, self.sex, self.site, self.earlier], queue=False)

    # -- events --------------------------------------------------------------------------------------------
    def strip_earlier(self, path: str | None) -> str | None:
        """The earlier photo is kept only as a metadata-free copy, like every upload (an error is shown, not kept)."""
        if not path:
            return None
        clean, error = sanitize_upload(path, self.app.settings)
        if error:
            gr.Warning(f"The earlier photo can't be used: {error}")
        return clean

    def add_message(self, history: list, message: dict | None, state: dict) -> tuple[list, Any, dict]:
        """Show the user's words at once and remember what to run.

        The photo is only noted here: stripping it (decode, metadata-free copy) takes seconds for a 12 MP phone
        photo, and this event runs before anything is drawn, so the page looked frozen. ``respond`` does it
        as a visible "Reading your photo" step and then shows the stripped copy above the words.
        """
        history = list(history or [])
        message = message or {"text": "", "files": []}
        text = (message.get("text") or "").strip()
        files = [f if isinstance(f, str) else f.get("path", "") for f in message.get("files") or []]
        state = dict(state or new_state())
        state.update(pending_image=None, pending_upload=None, pending_text=text, pending_error=None)
        chosen, note = choose_image(files)
        if chosen:
            state["pending_upload"] = chosen
            if note:
                state["pending_note"] = note
        if text:
            history.append({"role": "user", "content": text})
        return history, gr.MultimodalTextbox(value=None, interactive=False), state

    def _read_upload(self, history: list, state: dict) -> Iterator[list]:
        """Strip the pending upload behind a visible step; leaves ``pending_image`` or ``pending_error`` set."""
        upload = state.pop("pending_upload", None)
        if not upload:
            return
        photo_at = len(history) - 1 if state.get("pending_text") else len(history)  # above the user's words
        step = {"role": "assistant", "content": "", "metadata": {"title": STEP_TITLES["intake"], "status": "pending"}}
        yield [*history, step]
        clean, error = sanitize_upload(upload, self.app.settings)
        if clean:
            history.insert(photo_at, {"role": "user", "content": {"path": clean}})
            state["pending_image"] = clean
        else:
            state["pending_error"] = error

    def respond(self, history: list, state: dict, audience: str, age: float | None = None, sex: str | None = None,
                site: str | None = None, earlier: str | None = None, overrides: dict | None = None) -> Iterator[dict]:
        state = dict(state)
        history = list(history)
        for shown in self._read_upload(history, state):
            yield {self.chatbot: shown}
        if state.get("pending_error"):
            history = list(history) + [{"role": "assistant", "content": state["pending_error"]}]
            state["pending_error"] = None
            self._forget_diagnosis(state)  # the user moved on to another photo: the old panel is not about it
            yield {self.chatbot: history, self.state: state, **dict(zip(self.panel, self.empty_panel()))}
            return
        note = state.pop("pending_note", None)
        if note:  # several attachments: say which one is used (the note comes from dermchat.intake.choose_image)
            history = list(history) + [{"role": "assistant", "content": note}]
        image = state.get("pending_image")
        yield from self._run(history, state, audience, image=image, text=state.get("pending_text", ""), force=False,
                             overrides=overrides, details=patient_details(age, sex, site), earlier=earlier)

    def continue_anyway(self, history: list, state: dict, audience: str, age: float | None = None,
                        sex: str | None = None, site: str | None = None, earlier: str | None = None,
                        overrides: dict | None = None) -> Iterator[dict]:
        if not state.get("image"):
            yield {self.chatbot: list(history) + [{"role": "assistant", "content": "There is no photo to continue with. Please attach one."}]}
            return
        history = list(history) + [{"role": "user", "content": "Continue anyway with this photo."}]
        yield {self.chatbot: history, self.continue_btn: gr.Button(visible=False)}  # one click, one turn
        yield from self._run(history, dict(state), audience, image=state["image"], text="", force=True,
                             overrides=overrides, details=patient_details(age, sex, site), earlier=earlier)

    def rerender(self, history: list, state: dict, audience: str) -> dict:
        """Audience switch: the last answer in the other audience's words, without re-running the image model.

        The explanation is the one part written for one audience (a clinician's reads "sentinel node biopsy"),
        so it alone is asked for again, through a follow-up turn about the same result.
        """
        if not state.get("last"):
            return {self.state: state}  # nothing answered yet (an empty dict would be an error in Gradio)
        state = dict(state)
        result = TurnResult.model_validate(state["last"])
        if result.explanation is not None and result.audience != audience:
            result = self._explained_for(result, state, history, audience)
            state["last"] = result.model_dump(mode="json")
            if result.diagnosis is not None and result.status != "followup":  # the result follow-ups are about
                state["result"] = state["last"]
        history = list(history)
        index = state.get("answer_index")
        if index is not None and index < len(history):
            history[index] = {"role": "assistant", "content": render(result, audience, html=True)}
        return {self.chatbot: history, self.state: state, **self.panel_updates(self._panel_result(result, state), audience)}

    def _explained_for(self, result: TurnResult, state: dict, history: list, audience: str) -> TurnResult:
        """``result`` with its explanation written again for ``audience`` (the rest is kept as it was)."""
        about = TurnResult.model_validate(state["result"]) if state.get("result") else None
        if result.status != "followup" and result.diagnosis is not None:
            about = result
        question = result.question or "Explain this result."
        again = self.app.run_turn_sync(None, question, audience=audience, previous=about, history=self._convo(history))
        if again.explanation is None:
            return result
        return result.model_copy(update={"explanation": again.explanation, "audience": audience})

    # -- the turn --------------------------------------------------------------------------------------------
    def _run(self, history: list, state: dict, audience: str, *, image: str | None, text: str, force: bool,
             overrides: dict | None, details: dict[str, Any] | None = None,
             earlier: str | None = None) -> Iterator[dict]:
        history = list(history)
        previous = TurnResult.model_validate(state["result"]) if state.get("result") else None
        step_index: dict[str, int] = {}
        events = self.app.run_turn(
            image, text, audience=audience, previous=previous if image is None else None, history=self._convo(history),
            force=force, seen_references=set(state.get("seen", [])), settings_overrides=overrides or None,
            earlier_image=earlier if image else None, **(details or {}),
        )
        for event in events:
            if event.kind == "result" and event.result is not None:
                result = event.result
                waiting = image is None and bool(state.get("retake")) and result.status == "no_image"
                if waiting:  # "I don't have a photo yet" would deny the photo the user just sent
                    result = result.model_copy(update={"message": RETAKE_WAITING})
                for index in step_index.values():
                    if history[index]["metadata"]["status"] == "pending":
                        history[index]["metadata"]["status"] = "done"
                history.append({"role": "assistant", "content": render(result, audience, html=True)})
                self._remember(state, result, image, len(history) - 1)
                updates = self.panel_updates(self._panel_result(result, state), audience)
                if waiting:  # a question in between keeps the way to use the photo anyway
                    updates[self.continue_btn] = gr.Button(visible=True)
                yield {self.chatbot: history, self.state: state, **updates}
                return
            title = STEP_TITLES.get(event.step, event.step)
            if event.kind == "start":
                history.append({"role": "assistant", "content": "", "metadata": {"title": title, "status": "pending"}})
                step_index[event.step] = len(history) - 1
            elif event.step in step_index:
                message = history[step_index[event.step]]
                message["content"] = event.message  # progress replaces: providers send the text so far
                if event.kind != "progress":
                    message["metadata"] = {"title": title, "status": "done"}
            yield {self.chatbot: history}

    @staticmethod
    def _convo(history: list) -> list[dict[str, str]]:
        """The last ten text messages (photos and step notes left out), as the explainer reads them."""
        convo = [{"role": m.get("role", ""), "content": m["content"]} for m in history if isinstance(m.get("content"), str)]
        return convo[-10:]

    @staticmethod
    def _forget_diagnosis(state: dict) -> None:
        """Follow-ups must not answer about an earlier photo once the user has sent another one."""
        state["result"] = None
        state["retake"] = False

    @staticmethod
    def _remember(state: dict, result: TurnResult, image: str | None, answer_index: int) -> None:
        dumped = result.model_dump(mode="json")
        state["last"] = dumped
        state["answer_index"] = answer_index
        state["answers"] = {**state.get("answers", {}), str(answer_index): feedback_fields(result)}
        if result.diagnosis is not None and result.status != "followup":
            state["result"] = dumped
        elif image:  # a new photo that got no diagnosis (retake, not skin): "is it cancer?" is about *that* one
            ChatTab._forget_diagnosis(state)
        if image:
            state["image"] = image
            state["retake"] = result.status == "retake"
        state["seen"] = list(dict.fromkeys([*state.get("seen", []), *[
            str(ref.extra.get("image_id")) for ref in result.references if ref.extra.get("image_id")
        ]]))

    # -- feedback on answers -----------------------------------------------------------------------------------
    @staticmethod
    def _rated_answer(history: list, state: dict, index: Any) -> str | None:
        """The answer a like button belongs to. Gradio groups consecutive assistant messages (a turn's step
        notes and its answer) under one set of buttons and reports the group's *first* message, so this is the
        first answer at or after it with no user message in between."""
        position = int(index[0] if isinstance(index, (list, tuple)) else index)
        answers = state.get("answers", {})
        for at in range(position, len(history or [])):
            if str(at) in answers:
                return str(at)
            if history[at].get("role") != "assistant":
                return None
        return None

    def on_like(self, history: list, state: dict, data: gr.LikeData) -> tuple[dict, Any, Any]:
        """Store a thumbs up / down or a flag for the rated answer (one row per answer; a new rating replaces
        it, a rating taken back deletes it) and offer the optional comment box."""
        state = dict(state or new_state())
        target = self._rated_answer(history, state, data.index)
        if target is None:  # a step note or a message that is no answer: nothing to rate
            return state, gr.Group(visible=False), gr.Textbox()
        rating = rating_from_like(data.liked)
        rated = dict(state.get("feedback", {}))
        row = rated.get(target)
        if rating is None:
            if row is not None:
                self.feedback_store.delete(row)
                rated.pop(target)
            state.update(feedback=rated, feedback_on=None)
            return state, gr.Group(visible=False), gr.Textbox(value="")
        if row is None or not self.feedback_store.update(row, rating=rating):
            rated[target] = self.feedback_store.add(state["answers"][target], rating)
        state.update(feedback=rated, feedback_on=target)
        return state, gr.Group(visible=True), gr.Textbox(value="")

    def on_comment(self, comment: str, state: dict) -> tuple[dict, Any, Any]:
        """Attach the optional comment to the answer rated last."""
        state = dict(state or new_state())
        row = state.get("feedback", {}).get(state.get("feedback_on") or "")
        if row is None:
            return state, gr.Group(visible=False), gr.Textbox(value="")
        try:
            self.feedback_store.update(row, comment=comment)
        except FeedbackError as exc:
            raise gr.Error(str(exc)) from None
        gr.Info("Thank you — your comment was saved.")
        state["feedback_on"] = None
        return state, gr.Group(visible=False), gr.Textbox(value="")

    # -- the side panel --------------------------------------------------------------------------------------
    def empty_panel(self) -> list[Any]:
        return ["", None, "", "", gr.Image(value=None, visible=False), [], "", "", gr.Button(visible=False)]

    @staticmethod
    def _panel_result(result: TurnResult, state: dict) -> TurnResult:
        """What the side panel shows: a follow-up keeps the reference images of the result it is about
        (a follow-up finds none of its own; an empty gallery and "0 real / 0 synthetic" would mislead)."""
        if result.status == "followup" and not result.references and state.get("result"):
            about = TurnResult.model_validate(state["result"])
            return result.model_copy(update={"references": about.references})
        return result

    def panel_updates(self, result: TurnResult, audience: str) -> dict:
        vocab = self.vocab
        diagnosis = result.diagnosis
        updates: dict[Any, Any] = {
            self.continue_btn: gr.Button(visible=result.status == "retake"),
            self.quality: render_quality(result.quality, audience) if result.quality else "",
        }
        if result.triage is not None:
            updates[self.triage] = triage_line(result.triage.tier, audience, html=True,
                                               same_day=result.triage.same_day)
        else:
            updates[self.triage] = ""
        if diagnosis is not None and diagnosis.differential and not diagnosis.abstained:
            label = {}
            for entry in diagnosis.top(7):
                name = vocab.get(entry.condition_id).name(audience)
                mark = " ✓" if entry.condition_id in diagnosis.prediction_set else ""
                label[f"{name}{mark}"] = entry.probability
            updates[self.differential] = label
            names = ", ".join(vocab.get(c).name(audience) for c in diagnosis.prediction_set)
            updates[self.pred_set] = f"**The answer is likely one of:** {names}  \n<sub>✓ = in the prediction set</sub>" if names else ""
        else:
            updates[self.differential] = None
            updates[self.pred_set] = ("**This photo can't be assessed:** no list of likely conditions is shown."
                                      if diagnosis is not None and diagnosis.abstained else "")
        heat = diagnosis.heatmap_path if diagnosis is not None else None
        updates[self.heatmap] = gr.Image(value=heat, visible=bool(heat) and audience == "clinician")
        updates[self.gallery] = [(ref.path, reference_caption(ref, vocab, audience)) for ref in result.references]
        updates[self.contrast] = contrast_markdown(result, audience)
        updates[self.citations] = citations_markdown(result)
        return updates


def contrast_markdown(result: TurnResult, audience: str) -> str:
    """'How to tell them apart': the top differentials side by side with features from the knowledge base."""
    gallery = build_gallery(result, audience)  # type: ignore[arg-type]
    if not gallery.columns:
        return ""
    header = "| | " + " | ".join(f"**{col.name}**" + (" ✓" if col.in_prediction_set else "") for col in gallery.columns) + " |"
    lines = ["**How to tell them apart**", "", header, "|---" * (len(gallery.columns) + 1) + "|"]
    depth = max(len(col.features) for col in gallery.columns)
    for row in range(depth):
        cells = [col.features[row].replace("|", "/") if row < len(col.features) else "" for col in gallery.columns]
        lines.append("| " + ("Looks like" if row == 0 else "") + " | " + " | ".join(cells) + " |")
    images = [f"{sum(i.kind == 'real' for i in col.items)} real / {sum(i.kind == 'synthetic' for i in col.items)} synthetic"
              for col in gallery.columns]
    lines.append("| Images | " + " | ".join(images) + " |")
    lines.append("")
    lines.append(f"<sub>{gallery.legend}</sub>")
    lines.extend(f"<sub>{note}</sub>" for note in gallery.notes)
    return "\n".join(lines)


def citations_markdown(result: TurnResult) -> str:
    if result.explanation is None or not result.explanation.citations:
        return ""
    return "\n".join(["**Sources**", *(f"- {link}" for link in source_links(result.explanation))])
