"""A headless endpoint, ``/turn``, for scripts and gradio_client: one turn, streamed as JSON.

Each yield carries the step events so far; the last one adds the structured result. The uploaded files go
through the same sanitising as chat uploads (EXIF stripped, Gradio's cached original deleted). An optional
earlier photo of the same spot (the last input) is compared with this one (``result.morphology.comparison``).

Files only on request (issue 23): the Grad-CAM heat map is drawn only with ``heatmap=True``, and the reference
images travel as files only with ``reference_images=True``. Under eight clients the reference downloads took
longer than the engine, and the heat map a third of each engine turn, for clients that mostly read the JSON.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.data_classes import FileData
from gradio.utils import NamedString
from gradio_client import utils as client_utils

from dermchat.context import heatmap_request
from dermchat.conversation import patient_details
from dermchat.engine import DermChat
from dermchat.request import TurnRequest
from dermchat.results import Audience, TurnResult
from dermchat_ui.uploads import sanitize_upload


class UploadedFile(gr.File):
    """``gr.File(type="filepath")`` without its leak: Gradio's version opens an empty ``tmp*`` file in its cache
    on every call and never removes it (187 of them after 190 uploads). The path Gradio cached is all we need."""

    def get_block_name(self) -> str:
        return "file"  # the browser draws it as an ordinary file input

    def _process_single_file(self, f: FileData) -> NamedString | bytes:
        if self.type != "filepath":
            return super()._process_single_file(f)
        if self.file_types and not client_utils.is_valid_file(f.path, self.file_types):
            raise gr.Error(f"Invalid file type. Please upload a file that is one of these formats: {self.file_types}")
        return NamedString(f.path)


def _as_file(path: str) -> dict[str, Any]:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def api_result(result: TurnResult, reference_images: bool = True) -> dict[str, Any]:
    """The result as JSON, with the heat map (when drawn) and, with ``reference_images``, each reference image as a
    nested file gradio_client downloads; without it a reference keeps its caption, provenance and flags only.

    gradio_client treats any dict with a ``path`` key as a file and replaces the whole dict by a local
    path; nesting the file under ``image`` keeps the caption, provenance and ``synthetic`` flag beside it.
    Gradio serves such files from its cache, so no server path of the turn folders is part of the JSON:
    ``heatmap_path`` becomes ``<turn folder>/<file>`` (the folder's name is random for study turns).
    """
    data = result.model_dump(mode="json")
    for key in ("references", "hidden_references"):
        for ref in data.get(key, []):
            path = ref.pop("path")  # a server path: never in the JSON itself
            if reference_images:
                ref["image"] = _as_file(path)
    for key in ("diagnosis", "second_opinion"):
        diagnosis = data.get(key)
        if diagnosis and diagnosis.get("heatmap_path"):
            heat = Path(diagnosis["heatmap_path"])
            diagnosis["heatmap"] = _as_file(str(heat))
            diagnosis["heatmap_path"] = f"{heat.parent.name}/{heat.name}"
    return data


class ServingClock:
    """Where a ``/turn`` call spends its time on the server (``dermchat bench-serve`` prints it).

    ``stream`` is the rest of the handler's wall time: Gradio sending the streamed events while the generator
    waits, and thread hand-offs between the parts. ``started_at`` (epoch seconds) lets a client on the same
    machine tell its queue wait apart from transport.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.started_at = time.time()  # wall clock, for the client's queue wait (same machine)
        self.parts: dict[str, float] = {}

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.parts[name] = self.parts.get(name, 0.0) + time.perf_counter() - start

    def figures(self) -> dict[str, float]:
        handler = time.perf_counter() - self.start
        out = {name: round(seconds * 1000, 1) for name, seconds in self.parts.items()}
        out["handler"] = round(handler * 1000, 1)
        out["stream"] = round((handler - sum(self.parts.values())) * 1000, 1)
        out["started_at"] = round(self.started_at, 4)  # seconds since the epoch, not a duration
        return out


def build_api(app: DermChat) -> None:
    with gr.Group(visible=False):
        image = UploadedFile(type="filepath", label="photo")  # any file: intake gives the friendly error
        question = gr.Textbox(label="question")
        audience = gr.Radio(["patient", "clinician"], value="patient", label="audience")
        force = gr.Checkbox(False, label="continue even if the photo quality is low")
        age = gr.Number(None, label="age in years (optional)")
        sex = gr.Textbox("", label="sex: female, male or empty (optional)")
        site = gr.Textbox("", label="body site, e.g. 'left forearm' (optional)")
        heatmap = gr.Checkbox(False, label="draw the Grad-CAM heat map (clinician view)")
        reference_images = gr.Checkbox(False, label="return the reference images as files")
        earlier = UploadedFile(type="filepath", label="earlier photo of the same spot, to compare (optional)")
        output = gr.JSON(label="turn")
        trigger = gr.Button("run turn")

    def turn(
        image_path: str | None,
        question_text: str,
        audience_value: Audience,
        force_value: bool,
        age_value: float | None = None,
        sex_value: str | None = None,
        site_value: str | None = None,
        heatmap_value: bool = False,
        reference_images_value: bool = False,
        earlier_path: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        clock = ServingClock()
        events: list[dict[str, Any]] = []
        clean = None
        if image_path:
            with clock.part("strip"):
                clean, error = sanitize_upload(image_path, app.settings)
            if error:
                yield {"events": [], "result": {"status": "invalid_input", "message": error}}
                return
        earlier_clean, earlier_error = sanitize_upload(earlier_path, app.settings) if earlier_path else (None, None)
        request = TurnRequest(
            image=clean,
            question=question_text or "",
            audience=audience_value or "patient",
            force=bool(force_value),
            patient=patient_details(age_value, sex_value, site_value),
            options=heatmap_request(bool(heatmap_value)),
            earlier_image=earlier_clean,
        )
        turn_events = app.run_turn(request)
        while True:
            with clock.part("engine"):
                event = next(turn_events, None)
            if event is None:
                return
            if event.kind == "result" and event.result is not None:
                with clock.part("encode"):
                    data = api_result(event.result, reference_images=bool(reference_images_value))
                if earlier_error:  # as the engine does for an earlier photo it cannot read: named, not fatal
                    data["notices"].append(f"The earlier photo could not be used for a comparison: {earlier_error}")
                yield {"events": events, "result": data, "serving_ms": clock.figures()}
                return
            events.append(event.model_dump(mode="json", exclude={"result"}))
            yield {"events": events, "result": None}

    trigger.click(
        turn,
        [image, question, audience, force, age, sex, site, heatmap, reference_images, earlier],
        output,
        api_name="turn",
    )
