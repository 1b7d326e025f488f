"""The chat tab: a thin Gradio adapter over ``DermChat.run_turn``.

Each step of the turn appears as a collapsible "thought" message (title + pending/done status) while it
runs; the final answer is the rendered ``TurnResult``, and the side panel shows the same result as cards.
What the conversation remembers is a ``dermchat.conversation.Conversation`` (kept in a ``gr.State``), and every
text is rendered by ``dermchat.render``: this module only lays out and wires.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gradio as gr

from dermchat.capabilities import STEP_TITLES
from dermchat.context import heatmap_request
from dermchat.conversation import Conversation, explainer_history, patient_details
from dermchat.engine import DermChat
from dermchat.feedback.record import FLAG_LABEL, FeedbackError, rating_from_like
from dermchat.feedback.store import FeedbackStore
from dermchat.render import (
    DIFFERENTIAL_SHOWN,
    differential_bars,
    prediction_set_panel,
    reference_gallery,
    render,
    render_contrast,
    render_quality,
    render_sources,
    triage_badge,
)
from dermchat.request import PatientDetails, TurnRequest
from dermchat.results import Audience, TurnResult
from dermchat.vocabulary import get_vocabulary
from dermchat_ui.details import BODY_SITES
from dermchat_ui.uploads import sanitize_upload

RETAKE_WAITING = (
    "Your last photo wasn't clear enough for me to look at, so I can't say anything about that spot yet. "
    "Please retake it, or choose 'Continue anyway' to use it as it is. Telling me more about the spot also helps."
)
IMAGE_TYPES = [".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".gif", ".bmp", ".tif", ".tiff"]


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
        self.state = gr.State(Conversation())
        with gr.Row():
            with gr.Column(scale=3):
                self.audience = gr.Radio(
                    ["patient", "clinician"], value=self.app.settings.audience, label="I am a", elem_id="audience"
                )
                # The height follows the screen so the message box is in view when the page opens (desktop and
                # phone); every answer can be rated (thumbs, or flagged as wrong or unsafe).
                self.chatbot = gr.Chatbot(
                    label="DermChat",
                    height="min(560px, 42vh)",
                    min_height=220,
                    elem_id="chatbot",
                    buttons=["copy"],
                    feedback_options=("Like", "Dislike", FLAG_LABEL),
                    placeholder="**Attach a close, well-lit photo of the skin below and ask a question.**",
                )
                self.message = gr.MultimodalTextbox(
                    file_types=IMAGE_TYPES,
                    file_count="multiple",
                    sources=["upload"],
                    elem_id="message",
                    placeholder="Ask a question, attach a photo…",
                    show_label=False,
                )
                with gr.Group(visible=False, elem_id="feedback-comment") as self.comment_group:
                    self.comment = gr.Textbox(
                        label="Thanks for rating this answer. Anything to add? (optional)",
                        max_lines=4,
                        max_length=2000,
                        elem_id="feedback-comment-text",
                    )
                    self.comment_btn = gr.Button("Send comment", size="sm", elem_id="feedback-comment-send")
                with gr.Row():
                    self.continue_btn = gr.Button("Continue anyway", visible=False, elem_id="continue-anyway")
                    self.clear_btn = gr.Button("New conversation", variant="secondary")
                with gr.Accordion("About the spot (optional)", open=False, elem_id="patient-details"):
                    gr.Markdown(
                        "Age, sex and where the spot is help the offline model weigh what it sees. "
                        "Leave any of them empty if you prefer."
                    )
                    with gr.Row():
                        # No minimum/maximum here: Gradio would refuse the whole turn over a typo (age 500) and
                        # leave the message box locked; the core names a detail it cannot use in a notice.
                        self.age = gr.Number(label="Age (years)", precision=0, elem_id="patient-age")
                        self.sex = gr.Dropdown(
                            ["not given", "female", "male"], value="not given", label="Sex", elem_id="patient-sex"
                        )
                        self.site = gr.Dropdown(
                            BODY_SITES, value=None, label="Body site", allow_custom_value=True, elem_id="patient-site"
                        )
                with gr.Accordion("Compare with an earlier photo", open=False, elem_id="compare-earlier"):
                    gr.Markdown(
                        "Add an older photo of the same spot, then send a new one: the answer says whether "
                        "it grew or changed colour. Take both the same way (distance, angle, light)."
                    )
                    self.earlier = gr.Image(
                        type="filepath",
                        sources=["upload"],
                        label="Earlier photo of the same spot",
                        height=160,
                        elem_id="earlier-photo",
                    )
            with gr.Column(scale=2):
                self.triage = gr.Markdown(elem_id="triage-badge")
                # No heading: Gradio's large top-class title ("Melanoma ✓") reads as a verdict, while the answer
                # says "likely one of" and the bars already show the ranking.
                self.differential = gr.Label(
                    label="Differential (calibrated probabilities)",
                    num_top_classes=DIFFERENTIAL_SHOWN,
                    elem_id="differential",
                    show_heading=False,
                )
                self.pred_set = gr.Markdown(elem_id="prediction-set")
                self.quality = gr.Markdown(elem_id="quality-card")
                self.heatmap = gr.Image(
                    label="What drove the prediction (clinician view)", visible=False, interactive=False
                )
                self.gallery = gr.Gallery(
                    label="Reference images", columns=3, height=260, elem_id="references", interactive=False
                )
                self.contrast = gr.Markdown(elem_id="contrast")
                self.citations = gr.Markdown(elem_id="citations")
        self.panel = [
            self.triage,
            self.differential,
            self.pred_set,
            self.quality,
            self.heatmap,
            self.gallery,
            self.contrast,
            self.citations,
            self.continue_btn,
        ]

    def wire(self, settings_state: gr.State | None = None) -> None:
        outputs = [self.chatbot, self.state, *self.panel]
        inputs = [self.chatbot, self.state, self.audience, self.age, self.sex, self.site, self.earlier] + (
            [settings_state] if settings_state is not None else []
        )
        submitted = self.message.submit(
            self.add_message,
            [self.chatbot, self.message, self.state],
            [self.chatbot, self.message, self.state],
            queue=False,
        )
        submitted.then(self.respond, inputs, outputs, api_name="respond").then(
            lambda: gr.MultimodalTextbox(value=None, interactive=True), None, [self.message]
        )
        # While a turn runs, "Continue anyway" is hidden: a click then would start a second turn over the same
        # conversation state (the result that finishes last would overwrite the other). The result shows it again
        # when the photo still waits for a retake.
        self.message.submit(lambda: gr.Button(visible=False), None, [self.continue_btn], queue=False)
        self.continue_btn.click(self.continue_anyway, inputs, outputs, api_name="continue_anyway")
        self.chatbot.like(
            self.on_like,
            [self.chatbot, self.state],
            [self.state, self.comment_group, self.comment],
            queue=False,
            api_visibility="private",
        )
        self.comment_btn.click(
            self.on_comment,
            [self.comment, self.state],
            [self.state, self.comment_group, self.comment],
            queue=False,
            api_visibility="private",
        )
        self.audience.change(self.rerender, [self.chatbot, self.state, self.audience], outputs)
        self.earlier.upload(self.strip_earlier, [self.earlier], [self.earlier], queue=False)
        # A new conversation may be about someone else: the details about the spot start empty too, or the next
        # photo would be weighed with the last person's age, sex and body site without anyone noticing.
        self.clear_btn.click(
            lambda: ([], Conversation(), *self.empty_panel(), None, "not given", None, None),
            None,
            [*outputs, self.age, self.sex, self.site, self.earlier],
            queue=False,
        )

    # -- events --------------------------------------------------------------------------------------------
    def strip_earlier(self, path: str | None) -> str | None:
        """The earlier photo is kept only as a metadata-free copy, like every upload (an error is shown, not kept)."""
        if not path:
            return None
        clean, error = sanitize_upload(path, self.app.settings)
        if error:
            gr.Warning(f"The earlier photo can't be used: {error}")
        return clean

    def add_message(
        self, history: list, message: dict | None, conversation: Conversation | None
    ) -> tuple[list, Any, Conversation]:
        """Show the user's words at once and remember what to run.

        The photo is only noted here: stripping it (decode, metadata-free copy) takes seconds for a 12 MP phone
        photo, and this event runs before anything is drawn, so the page looked frozen. ``respond`` does it
        as a visible "Reading your photo" step and then shows the stripped copy above the words.
        """
        history = list(history or [])
        message = message or {"text": "", "files": []}
        text = (message.get("text") or "").strip()
        files = [f if isinstance(f, str) else f.get("path", "") for f in message.get("files") or []]
        conversation = (conversation or Conversation()).copy()
        conversation.receive(text, files)
        if text:
            history.append({"role": "user", "content": text})
        return history, gr.MultimodalTextbox(value=None, interactive=False), conversation

    def _read_upload(self, history: list, conversation: Conversation) -> Iterator[list]:
        """Strip the pending upload behind a visible step; the conversation keeps the copy or why it was refused."""
        upload = conversation.take_upload()
        if not upload:
            return
        photo_at = len(history) - 1 if conversation.pending.text else len(history)  # above the user's words
        step = {"role": "assistant", "content": "", "metadata": {"title": STEP_TITLES["intake"], "status": "pending"}}
        yield [*history, step]
        clean, error = sanitize_upload(upload, self.app.settings)
        if clean:
            history.insert(photo_at, {"role": "user", "content": {"path": clean}})
            conversation.photo_read(clean)
        else:
            conversation.photo_refused(error)

    def respond(
        self,
        history: list,
        conversation: Conversation,
        audience: Audience,
        age: float | None = None,
        sex: str | None = None,
        site: str | None = None,
        earlier: str | None = None,
        overrides: dict | None = None,
    ) -> Iterator[dict]:
        conversation = conversation.copy()
        history = list(history)
        for shown in self._read_upload(history, conversation):
            yield {self.chatbot: shown}
        refusal = conversation.take_refusal()
        if refusal:
            history = [*history, {"role": "assistant", "content": refusal}]
            yield {self.chatbot: history, self.state: conversation, **dict(zip(self.panel, self.empty_panel()))}
            return
        note = conversation.take_note()
        if note:  # several attachments: say which one is used (the note comes from dermchat.intake.choose_image)
            history = [*history, {"role": "assistant", "content": note}]
        yield from self._run(
            history,
            conversation,
            audience,
            image=conversation.pending.photo,
            text=conversation.pending.text,
            force=False,
            overrides=overrides,
            details=patient_details(age, sex, site),
            earlier=earlier,
        )

    def continue_anyway(
        self,
        history: list,
        conversation: Conversation,
        audience: Audience,
        age: float | None = None,
        sex: str | None = None,
        site: str | None = None,
        earlier: str | None = None,
        overrides: dict | None = None,
    ) -> Iterator[dict]:
        if not conversation.photo:
            yield {
                self.chatbot: [
                    *history,
                    {"role": "assistant", "content": "There is no photo to continue with. Please attach one."},
                ]
            }
            return
        history = [*history, {"role": "user", "content": "Continue anyway with this photo."}]
        yield {self.chatbot: history, self.continue_btn: gr.Button(visible=False)}  # one click, one turn
        yield from self._run(
            history,
            conversation.copy(),
            audience,
            image=conversation.photo,
            text="",
            force=True,
            overrides=overrides,
            details=patient_details(age, sex, site),
            earlier=earlier,
        )

    def rerender(self, history: list, conversation: Conversation, audience: Audience) -> dict:
        """Audience switch: the last answer in the other audience's words, without re-running the image model.

        The explanation is the one part written for one audience (a clinician's reads "sentinel node biopsy"),
        so it alone is asked for again, through a follow-up turn about the same result.
        """
        changed = conversation.copy()
        result = changed.last
        if result is None:
            return {self.state: conversation}  # nothing answered yet (an empty dict would be an error in Gradio)
        if changed.written_for_another_audience(audience):
            result = self._explained_for(result, changed, history, audience)
            changed.replace_last(result)
        history = list(history)
        index = changed.last_answer_at
        if index is not None and index < len(history):
            history[index] = {"role": "assistant", "content": render(result, audience, html=True)}
        return {
            self.chatbot: history,
            self.state: changed,
            **self.panel_updates(changed.with_subject_references(result), audience),
        }

    def _explained_for(
        self, result: TurnResult, conversation: Conversation, history: list, audience: Audience
    ) -> TurnResult:
        """``result`` with its explanation written again for ``audience`` (the rest is kept as it was)."""
        question = result.question or "Explain this result."
        again = self.app.run_turn_sync(
            TurnRequest(
                question=question,
                audience=audience,
                previous=conversation.rewrite_subject(),
                history=explainer_history(history),
            )
        )
        if again.explanation is None:
            return result
        return result.model_copy(update={"explanation": again.explanation, "audience": audience})

    # -- the turn --------------------------------------------------------------------------------------------
    def _run(
        self,
        history: list,
        conversation: Conversation,
        audience: Audience,
        *,
        image: str | None,
        text: str,
        force: bool,
        overrides: dict | None,
        details: PatientDetails | None = None,
        earlier: str | None = None,
    ) -> Iterator[dict]:
        history = list(history)
        step_index: dict[str, int] = {}
        events = self.app.run_turn(
            TurnRequest(
                image=image,
                question=text,
                audience=audience,
                previous=conversation.follow_up_subject() if image is None else None,
                history=explainer_history(history),
                force=force,
                seen_references=conversation.shown_reference_ids(),
                settings_overrides=overrides or None,
                earlier_image=earlier if image else None,
                patient=details or PatientDetails(),
                options=heatmap_request(audience == "clinician"),  # only the clinician view shows it (issue 23)
            )
        )
        for event in events:
            if event.kind == "result" and event.result is not None:
                result = event.result
                waiting = conversation.still_waiting_for_retake(image, result)
                if waiting:  # "I don't have a photo yet" would deny the photo the user just sent
                    result = result.model_copy(update={"message": RETAKE_WAITING})
                for index in step_index.values():
                    if history[index]["metadata"]["status"] == "pending":
                        history[index]["metadata"]["status"] = "done"
                history.append({"role": "assistant", "content": render(result, audience, html=True)})
                conversation.remember(result, image, len(history) - 1)
                updates = self.panel_updates(conversation.with_subject_references(result), audience)
                if waiting:  # a question in between keeps the way to use the photo anyway
                    updates[self.continue_btn] = gr.Button(visible=True)
                yield {self.chatbot: history, self.state: conversation, **updates}
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

    # -- feedback on answers -----------------------------------------------------------------------------------
    def on_like(
        self, history: list, conversation: Conversation | None, data: gr.LikeData
    ) -> tuple[Conversation, Any, Any]:
        """Store a thumbs up / down or a flag for the rated answer and offer the optional comment box."""
        conversation = (conversation or Conversation()).copy()
        target = conversation.rated_answer(history, data.index)
        if target is None:  # a step note or a message that is no answer: nothing to rate
            return conversation, gr.Group(visible=False), gr.Textbox()
        rating = rating_from_like(data.liked)
        conversation.rate(self.feedback_store, target, rating)
        return conversation, gr.Group(visible=rating is not None), gr.Textbox(value="")

    def on_comment(self, comment: str, conversation: Conversation | None) -> tuple[Conversation, Any, Any]:
        """Attach the optional comment to the answer rated last."""
        conversation = (conversation or Conversation()).copy()
        try:
            added = conversation.add_comment(self.feedback_store, comment)
        except FeedbackError as exc:
            raise gr.Error(str(exc)) from None
        if added:
            gr.Info("Thank you — your comment was saved.")
        return conversation, gr.Group(visible=False), gr.Textbox(value="")

    # -- the side panel --------------------------------------------------------------------------------------
    def empty_panel(self) -> list[Any]:
        return ["", None, "", "", gr.Image(value=None, visible=False), [], "", "", gr.Button(visible=False)]

    def panel_updates(self, result: TurnResult, audience: str) -> dict:
        diagnosis = result.diagnosis
        heat = diagnosis.heatmap_path if diagnosis is not None else None
        return {
            self.continue_btn: gr.Button(visible=result.status == "retake"),
            self.quality: render_quality(result.quality, audience) if result.quality else "",
            self.triage: triage_badge(result.triage, audience),
            self.differential: differential_bars(diagnosis, audience, self.vocab),
            self.pred_set: prediction_set_panel(diagnosis, audience, self.vocab),
            self.heatmap: gr.Image(value=heat, visible=bool(heat) and audience == "clinician"),
            self.gallery: reference_gallery(result, audience, self.vocab),
            self.contrast: render_contrast(result, audience),
            self.citations: render_sources(result),
        }
