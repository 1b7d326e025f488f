"""Helpers for the study tests: a small in-test pipeline plugin, simulated participants, a crash worker.

The pipeline plugin exists only so the study tests do not depend on the (separately owned, slow to load)
model plugins: it goes through the real engine, intake, safety policy and rendering, with providers whose
output is derived from the real image pixels. ``python tests/study_fixtures.py crash-worker DB`` runs
participants forever, printing a line after each committed step, so a test can SIGKILL it mid-run.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dermchat.engine import DermChat
from dermchat.hookspecs import hookimpl
from dermchat.paths import default_data_dir
from dermchat.plugin_manager import PluginManager
from dermchat.providers import Diagnoser, Explainer, ReferenceGenerator
from dermchat.results import Citation, Diagnosis, DifferentialEntry, Explanation, Reference
from dermchat.settings import Settings
from dermchat.study.definition import ChoiceItem, Item, LikertItem, Study, load_study
from dermchat.study.session import ParticipantState, StudyFlow

REPO = Path(__file__).resolve().parent.parent
WITHIN = REPO / "studies" / "reference_images_within.yaml"
BETWEEN = REPO / "studies" / "citations_between.yaml"
CONDITIONS = ["melanocytic_nevus", "melanoma", "benign_keratosis", "basal_cell_carcinoma"]


class PixelDiagnoser(Diagnoser):
    """Differential from the image's pixel hash: deterministic per image, different across images."""

    id = "study-test-diagnoser"
    label = "Study test diagnoser"
    version = "t1"

    def diagnose(self, ctx: Any) -> Diagnosis:
        digest = hashlib.sha256(ctx.image.tobytes()).digest()
        weights = [1 + digest[i] for i in range(len(CONDITIONS))]
        total = sum(weights)
        entries = [DifferentialEntry(condition_id=c, probability=w / total) for c, w in zip(CONDITIONS, weights)]
        top = max(entries, key=lambda e: e.probability)
        return Diagnosis(
            provider_id=self.id,
            provider_version=self.version,
            differential=entries,
            prediction_set=[top.condition_id],
            coverage=0.9,
        )


class CitingExplainer(Explainer):
    id = "study-test-explainer"
    label = "Study test explainer"
    version = "t1"

    def explain(self, ctx: Any) -> Explanation:
        top = ctx.top_conditions[0] if ctx.top_conditions else "melanocytic_nevus"
        return Explanation(
            provider_id=self.id,
            text=f"The features discussed for {top.replace('_', ' ')} are summarised by the sources below [1].",
            citations=[
                Citation(
                    marker="[1]",
                    source_id="dermnet",
                    title="DermNet overview",
                    url="https://dermnetnz.org/",
                    condition_id=top,
                )
            ],
        )


class HamExemplars(ReferenceGenerator):
    """Two real HAM images (never copied) as references for the top condition."""

    id = "study-test-references"
    label = "Study test references"
    version = "t1"

    def references(self, ctx: Any) -> list[Reference]:
        images = sorted((default_data_dir() / "images").glob("ISIC_00243*.jpg"))[:2]
        top = ctx.top_conditions[0]
        return [
            Reference(
                path=str(p),
                condition_id=top,
                caption=f"Example {i + 1}",
                provenance=f"HAM10000 {p.stem}",
                synthetic=False,
                provider_id=self.id,
                license="CC BY-NC 4.0",
            )
            for i, p in enumerate(images)
        ]


class StudyTestPlugin:
    @hookimpl
    def register_diagnosers(self, register: Any) -> None:
        register(PixelDiagnoser())

    @hookimpl
    def register_explainers(self, register: Any) -> None:
        register(CitingExplainer())

    @hookimpl
    def register_reference_generators(self, register: Any) -> None:
        register(HamExemplars())


def make_app(workdir: Path) -> DermChat:
    plugins = PluginManager(load_entry_points=False)
    plugins.register(StudyTestPlugin(), name="study-test")
    settings = Settings(
        quality=None,
        diagnoser=PixelDiagnoser.id,
        explainer=CitingExplainer.id,
        references=[HamExemplars.id],
        workdir=str(workdir),
    )
    return DermChat(settings=settings, plugins=plugins)


def answer_for(item: Item, participant_index: int = 0) -> Any:
    """A valid answer that varies with the participant (so summaries have spread)."""
    if isinstance(item, LikertItem):
        return 1 + (participant_index % item.scale)
    if isinstance(item, ChoiceItem):
        options = item.options()
        return options[participant_index % len(options)]
    return f"comment {participant_index}"


def run_participant(
    flow: StudyFlow, app: DermChat, index: int = 0, code: str | None = None, stop_after: int | None = None
) -> ParticipantState:
    """Consent, code, every case (real pipeline) and questionnaire; optionally stop after ``stop_after`` steps."""
    state = flow.enter_code(flow.consent(flow.start(), True), code)
    done = 0
    while state.stage in {"case", "questionnaire"}:
        if stop_after is not None and done >= stop_after:
            break
        if state.stage == "case":
            events = list(flow.run_case(state, app))
            assert events[-1].kind == "result"
        state = flow.submit(state, {item.id: answer_for(item, index) for item in flow.items(state)})
        done += 1
    return state


def load(path: Path = WITHIN) -> Study:
    return load_study(path)


def crash_worker(db_url: str, workdir: str) -> None:
    """Run participants back to back; after each committed step print 'COMMITTED <code> <step>'."""
    from dermchat.study.store import StudyStore

    flow = StudyFlow(load(WITHIN), StudyStore(db_url))
    app = make_app(Path(workdir))
    index = 0
    while True:
        state = flow.enter_code(flow.consent(flow.start(), True), None)
        print(f"ENROLLED {state.code}", flush=True)
        while state.stage in {"case", "questionnaire"}:
            step = state.step
            if state.stage == "case":
                list(flow.run_case(state, app))
            state = flow.submit(state, {item.id: answer_for(item, index) for item in flow.items(state)})
            print(f"COMMITTED {state.code} {step}", flush=True)
        index += 1


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "crash-worker":
    crash_worker(sys.argv[2], sys.argv[3])
