"""Fake providers for core tests only (the real ones live in plugins/ and have their own tests).

They are deliberately simple but not constant: the fake diagnoser derives its differential from the image's
mean colour, so tests can check that the pipeline passes the real decoded image through.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dermchat.context import TurnContext
from dermchat.hookspecs import hookimpl
from dermchat.providers import Diagnoser, Explainer, QualityChecker, ReferenceGenerator
from dermchat.results import (
    Citation,
    Diagnosis,
    DifferentialEntry,
    Explanation,
    QualityReason,
    QualityReport,
    Reference,
)


class FakeQuality(QualityChecker):
    id = "fake-quality"
    label = "Fake quality (brightness only)"

    class Options(BaseModel):
        threshold: float = 50

    def check(self, ctx: TurnContext) -> QualityReport:
        assert ctx.image is not None
        grey = ctx.image.convert("L")
        mean = sum(grey.getdata()) / (grey.width * grey.height)
        uniform = grey.getextrema()[0] == grey.getextrema()[1]
        score = max(0.0, min(100.0, mean / 1.5))
        ctx.progress("measuring brightness", 0.5)
        reasons = [
            QualityReason(
                id="underexposed",
                label="Under-exposure",
                score=score,
                problem=score < 50,
                patient_tip="Take the photo in daylight.",
                clinician_detail=f"mean {mean:.0f}",
            )
        ]
        return QualityReport(
            provider_id=self.id,
            score=score,
            acceptable=score >= self.options.threshold,
            threshold=self.options.threshold,
            band="good" if score >= 50 else "poor",
            reasons=reasons,
            is_skin=not uniform,
            discount=0.7,
        )


class FakeDiagnoser(Diagnoser):
    id = "fake-dx"
    label = "Fake diagnoser (colour rule)"
    version = "1.0"

    def diagnose(self, ctx: TurnContext) -> Diagnosis:
        assert ctx.image is not None
        r, g, b = ctx.image.resize((1, 1)).getpixel((0, 0))
        dark = (r + g + b) / 3 < 100
        probs = (
            {"melanoma": 0.6, "melanocytic_nevus": 0.3, "benign_keratosis": 0.1}
            if dark
            else {"melanocytic_nevus": 0.85, "benign_keratosis": 0.1, "dermatofibroma": 0.05}
        )
        ranked = sorted(probs, key=probs.get, reverse=True)  # type: ignore[arg-type]
        return Diagnosis(
            provider_id=self.id,
            provider_version=self.version,
            differential=[DifferentialEntry(condition_id=c, probability=p) for c, p in probs.items()],
            prediction_set=ranked[:1] if not dark else ranked[:2],
            coverage=0.9,
        )


class FakeExplainer(Explainer):
    id = "fake-explainer"
    label = "Fake explainer"

    def explain(self, ctx: TurnContext) -> Explanation:
        top = ctx.top_conditions[:1]
        text = f"About {top[0]}: see the source [1]." if top else f"You asked: {ctx.question}"
        return Explanation(
            provider_id=self.id,
            text=text,
            citations=[
                Citation(marker="[1]", source_id="nhs", title="NHS", url="https://www.nhs.uk/conditions/moles/")
            ],
        )


class FakeReferences(ReferenceGenerator):
    id = "fake-refs"
    label = "Fake synthetic references"
    synthetic = True

    def references(self, ctx: TurnContext) -> list[Reference]:
        out = []
        for i, cid in enumerate(ctx.top_conditions[:2]):
            path = ctx.workdir / f"ref{i}.png"
            assert ctx.image is not None
            ctx.image.save(path)
            out.append(
                Reference(
                    path=str(path),
                    condition_id=cid,
                    caption=cid,
                    provenance="test",
                    synthetic=True,
                    provider_id=self.id,
                    verified=(i == 0),
                )
            )
        return out


class FakePlugin:
    """Registers all fakes; use with ``PluginManager(load_entry_points=False).register(FakePlugin(), 'fakes')``."""

    @hookimpl
    def register_quality_checks(self, register: Any) -> None:
        register(FakeQuality())

    @hookimpl
    def register_diagnosers(self, register: Any) -> None:
        register(FakeDiagnoser())

    @hookimpl
    def register_explainers(self, register: Any) -> None:
        register(FakeExplainer())

    @hookimpl
    def register_reference_generators(self, register: Any) -> None:
        register(FakeReferences())


FAKE_SETTINGS: dict[str, Any] = {
    "quality": "fake-quality",
    "diagnoser": "fake-dx",
    "explainer": "fake-explainer",
    "references": ["fake-refs"],
}
