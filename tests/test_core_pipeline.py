"""The turn pipeline: step events, gates, failure isolation, follow-ups and safety, with fake providers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from core_helpers import fake_app, solid_image

from dermchat.hookspecs import hookimpl
from dermchat.providers import Diagnoser, Explainer, ProviderError
from dermchat.request import TurnRequest
from dermchat.safety import NOT_A_DIAGNOSIS, SEE_CLINICIAN_URGENT, SYNTHETIC_NOTICE


@pytest.fixture()
def bright(tmp_path: Path) -> Path:
    return solid_image(tmp_path / "bright.png", (200, 160, 140))


@pytest.fixture()
def dark(tmp_path: Path) -> Path:
    return solid_image(tmp_path / "dark.png", (90, 80, 80))


def test_events_stream_in_step_order_and_end_with_one_result(tmp_path: Path, bright: Path) -> None:
    app = fake_app(tmp_path)
    events = list(app.run_turn(TurnRequest(image=bright, question="what is this?")))
    starts = [e.step for e in events if e.kind == "start"]
    assert starts == ["quality", "diagnosis", "explanation", "references"]
    assert any(e.kind == "progress" and e.step == "quality" for e in events)
    assert events[-1].kind == "result" and sum(e.kind == "result" for e in events) == 1
    result = events[-1].result
    assert result.status == "ok"
    assert result.diagnosis.top(1)[0].condition_id == "melanocytic_nevus"
    assert result.triage.tier == "reassure"
    assert set(result.timings_ms) >= {"quality", "diagnosis", "explanation", "references"}
    assert result.providers["diagnoser"].id == "fake-dx"
    json.loads(result.model_dump_json())  # JSON-serialisable


def test_every_answer_carries_the_notice_and_malignancy_means_see_a_clinician(tmp_path: Path, dark: Path) -> None:
    result = fake_app(tmp_path).run_turn_sync(TurnRequest(image=dark, question="", force=True))
    assert result.triage.tier == "urgent"
    assert NOT_A_DIAGNOSIS in result.notices and SEE_CLINICIAN_URGENT in result.notices


def test_malignant_class_forces_urgent_even_when_provider_hints_reassure(tmp_path: Path, dark: Path) -> None:
    class Reassuring(Diagnoser):
        id = "reassuring"
        label = "always says reassure"

        def diagnose(self, ctx):
            from dermchat.results import Diagnosis, DifferentialEntry

            return Diagnosis(
                provider_id=self.id,
                triage_hint="reassure",
                prediction_set=["melanoma"],
                differential=[
                    DifferentialEntry(condition_id="melanoma", probability=0.5),
                    DifferentialEntry(condition_id="melanocytic_nevus", probability=0.5),
                ],
            )

    class Plugin:
        @hookimpl
        def register_diagnosers(self, register):
            register(Reassuring())

    result = fake_app(tmp_path, [(Plugin(), "reassuring")], diagnoser="reassuring").run_turn_sync(
        TurnRequest(image=dark, force=True)
    )
    assert result.triage.tier == "urgent"


def test_unverified_synthetic_references_are_hidden_and_labelled(tmp_path: Path, bright: Path) -> None:
    result = fake_app(tmp_path).run_turn_sync(TurnRequest(image=bright))
    assert [r.verified for r in result.references] == [True]
    assert len(result.hidden_references) == 1
    assert SYNTHETIC_NOTICE in result.notices


def test_quality_gate_asks_for_retake_and_continue_anyway_discounts(tmp_path: Path) -> None:
    gloomy = solid_image(tmp_path / "gloomy.png", (50, 40, 40))
    app = fake_app(tmp_path)
    retake = app.run_turn_sync(TurnRequest(image=gloomy))
    assert retake.status == "retake" and retake.diagnosis is None
    assert "daylight" in retake.message and "continue anyway" in retake.message
    forced = app.run_turn_sync(TurnRequest(image=gloomy, force=True))
    assert forced.quality_overridden and forced.diagnosis is not None
    assert forced.diagnosis.extra["quality_discount"] == pytest.approx(0.7)
    assert forced.diagnosis.top(1)[0].probability < 0.6  # flattened from 0.6
    assert any("photo quality is low" in n for n in forced.notices)


@pytest.mark.parametrize("hint, kept", [("reassure", None), ("routine", None), ("urgent", "urgent")])
def test_quality_discount_retires_a_hint_made_for_the_narrower_set(hint: str, kept: str | None) -> None:
    from dermchat.results import Diagnosis, DifferentialEntry
    from dermchat.safety import discount_confidence

    before = Diagnosis(
        provider_id="p",
        triage_hint=hint,
        triage_reason="single benign condition",
        prediction_set=["melanocytic_nevus"],
        coverage=0.9,
        rationale="Top class nevus (80%).",
        extra={"probabilities": [0.8, 0.2]},
        differential=[
            DifferentialEntry(condition_id="melanocytic_nevus", probability=0.8),
            DifferentialEntry(condition_id="melanoma", probability=0.2),
        ],
    )
    after = discount_confidence(before, 0.5, "blur")
    assert after.prediction_set == ["melanocytic_nevus", "melanoma"]  # widened
    assert after.triage_hint == kept
    assert (after.triage_reason is None) == (kept is None)
    # the provider's own figures are kept, but labelled as describing the answer before the discount
    assert after.extra["before_quality_discount"] == {"probabilities": [0.8, 0.2], "triage_hint": hint}
    assert set(after.extra) == {"before_quality_discount", "quality_discount"}
    assert after.rationale == "Before the photo-quality discount: Top class nevus (80%)."
    assert before.triage_hint == hint and before.extra == {"probabilities": [0.8, 0.2]}  # not mutated


def _diagnoser_plugin(provider_id: str, diagnose: Any) -> tuple[object, str]:
    """A plugin registering one diagnoser whose `diagnose(ctx)` is `diagnose`."""
    provider = type(
        provider_id.title().replace("-", ""),
        (Diagnoser,),
        {"id": provider_id, "label": provider_id, "diagnose": lambda self, ctx: diagnose(ctx)},
    )()

    class Plugin:
        @hookimpl
        def register_diagnosers(self, register):
            register(provider)

    return Plugin(), provider_id


def _dx(provider_id: str, probs: dict[str, float], prediction_set: list[str], **kw: Any) -> Any:
    from dermchat.results import Diagnosis, DifferentialEntry

    return Diagnosis(
        provider_id=provider_id,
        prediction_set=prediction_set,
        coverage=0.9,
        **kw,
        differential=[DifferentialEntry(condition_id=c, probability=p) for c, p in probs.items()],
    )


def test_a_second_opinion_that_suspects_malignancy_makes_the_turn_urgent(tmp_path: Path, bright: Path) -> None:
    alarmed = _diagnoser_plugin(
        "alarmed", lambda ctx: _dx("alarmed", {"melanoma": 0.6, "melanocytic_nevus": 0.4}, ["melanoma"])
    )
    unsure = _diagnoser_plugin("unsure", lambda ctx: _dx("unsure", {}, [], abstained=True))
    alone = fake_app(tmp_path).run_turn_sync(TurnRequest(image=bright))
    assert alone.triage.tier == "reassure"  # the lead (fake) model sees a benign mole
    events = list(fake_app(tmp_path, [alarmed], second_opinion="alarmed").run_turn(TurnRequest(image=bright)))
    result = events[-1].result
    streamed = [e.data["triage"]["tier"] for e in events if "triage" in e.data]
    assert streamed == ["reassure", "urgent"]  # scripts reading the stream see the change too
    assert result.triage.tier == "urgent"
    assert result.triage.reason.lower().startswith("second opinion (alarmed): possible cutaneous melanoma")
    assert result.triage.drivers == ["melanoma"] and SEE_CLINICIAN_URGENT in result.notices
    # a second model that abstains (out of its depth) neither raises nor blurs the first model's answer
    quiet = fake_app(tmp_path, [unsure], second_opinion="unsure").run_turn_sync(TurnRequest(image=bright))
    assert quiet.triage.tier == "reassure" and quiet.second_opinion is not None


def test_with_the_quality_gate_off_a_poor_photo_still_gets_less_certainty(tmp_path: Path) -> None:
    gloomy = solid_image(tmp_path / "gloomy.png", (50, 40, 40))
    result = fake_app(tmp_path, quality_gate=False).run_turn_sync(TurnRequest(image=gloomy))
    assert result.status == "ok" and not result.quality_overridden  # not stopped: the gate is off
    assert result.diagnosis.extra["quality_discount"] == pytest.approx(0.7)
    assert result.diagnosis.top(1)[0].probability < 0.6
    assert any("photo quality is low" in n for n in result.notices)


def test_patients_are_told_which_condition_makes_a_visit_urgent(tmp_path: Path, bright: Path) -> None:
    from dermchat.render import render
    from dermchat.vocabulary import get_vocabulary

    cautious = _diagnoser_plugin(
        "cautious",
        lambda ctx: _dx(
            "cautious",
            {"melanocytic_nevus": 0.9, "melanoma": 0.1},
            ["melanocytic_nevus"],
            triage_hint="urgent",
            triage_reason="melanoma probability 0.10 is above the high-sensitivity threshold 0.06",
        ),
    )
    result = fake_app(tmp_path, [cautious], diagnoser="cautious").run_turn_sync(TurnRequest(image=bright))
    assert result.triage.tier == "urgent" and result.triage.drivers == ["melanoma"]
    name = get_vocabulary().get("melanoma").patient_name
    assert f"Why: {name} can't be ruled out from this photo." in render(result, "patient")
    plain = fake_app(tmp_path).run_turn_sync(TurnRequest(image=bright))
    assert plain.triage.drivers == [] and "Why:" not in render(plain, "patient")


def test_not_skin_stops_before_diagnosis(tmp_path: Path) -> None:
    flat = solid_image(tmp_path / "flat.png", (200, 200, 200), noise=False)
    result = fake_app(tmp_path).run_turn_sync(TurnRequest(image=flat))
    assert result.status == "not_skin" and result.diagnosis is None
    assert "doesn't seem to show skin" in result.message


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "empty"),
        (b"this is not an image", "doesn't look like a photo"),
    ],
)
def test_bad_uploads_get_plain_messages(tmp_path: Path, content: bytes, expected: str) -> None:
    bad = tmp_path / "upload.jpg"
    bad.write_bytes(content)
    result = fake_app(tmp_path).run_turn_sync(TurnRequest(image=bad))
    assert result.status == "invalid_input" and expected in result.message
    assert NOT_A_DIAGNOSIS in result.notices


def test_empty_message_and_text_only_first_message(tmp_path: Path) -> None:
    app = fake_app(tmp_path)
    assert app.run_turn_sync(TurnRequest(image=None, question="   ")).status == "invalid_input"
    text_only = app.run_turn_sync(TurnRequest(image=None, question="I have an itchy rash on my elbows"))
    assert text_only.status == "no_image" and "attach one" in text_only.message
    assert text_only.explanation is not None  # explainer offers conditions to consider / intake questions


def test_follow_up_continues_about_the_last_result(tmp_path: Path, bright: Path) -> None:
    from dermchat.render import render

    app = fake_app(tmp_path)
    first = app.run_turn_sync(TurnRequest(image=bright))
    follow = app.run_turn_sync(TurnRequest(image=None, question="is it contagious?", previous=first))
    assert follow.status == "followup"
    assert follow.diagnosis == first.diagnosis
    assert "melanocytic_nevus" in follow.explanation.text
    assert "Image quality" in render(first, "clinician")
    assert "Image quality" not in render(follow, "clinician")  # the same photo: its table is not repeated


def test_crashing_explainer_degrades_the_turn_only(tmp_path: Path, bright: Path) -> None:
    class Broken(Explainer):
        id = "broken-explainer"
        label = "crashes"

        def explain(self, ctx):
            raise RuntimeError("index corrupt")

    class Plugin:
        @hookimpl
        def register_explainers(self, register):
            register(Broken())

    result = fake_app(tmp_path, [(Plugin(), "broken")], explainer="broken-explainer").run_turn_sync(
        TurnRequest(image=bright)
    )
    assert result.status == "ok" and result.diagnosis is not None and result.references
    assert result.errors[0].step == "explanation" and "(RuntimeError) (error id " in result.errors[0].message
    assert "index corrupt" not in result.errors[0].message  # the details are in the server log only
    assert "explanation could not be prepared" in " ".join(result.notices)


def test_crashing_diagnoser_ends_the_turn_politely(tmp_path: Path, bright: Path) -> None:
    class Broken(Diagnoser):
        id = "broken-dx"
        label = "crashes"

        def diagnose(self, ctx):
            raise ProviderError("the model server is down")

    class Plugin:
        @hookimpl
        def register_diagnosers(self, register):
            register(Broken())

    app = fake_app(tmp_path, [(Plugin(), "broken")], diagnoser="broken-dx")
    events = list(app.run_turn(TurnRequest(image=bright)))
    result = events[-1].result
    assert result.status == "diagnosis_failed" and "model server is down" in result.message
    assert not any(e.step == "explanation" for e in events)
    assert NOT_A_DIAGNOSIS in result.notices


def test_unknown_labels_are_dropped_and_probabilities_renormalised(tmp_path: Path, bright: Path) -> None:
    class Sloppy(Diagnoser):
        id = "sloppy"
        label = "returns an unknown id"

        def diagnose(self, ctx):
            from dermchat.results import Diagnosis, DifferentialEntry

            return Diagnosis(
                provider_id=self.id,
                differential=[
                    DifferentialEntry(condition_id="not_a_condition", probability=0.5),
                    DifferentialEntry(condition_id="psoriasis", probability=0.25),
                    DifferentialEntry(condition_id="atopic_eczema", probability=0.25),
                ],
            )

    class Plugin:
        @hookimpl
        def register_diagnosers(self, register):
            register(Sloppy())

    result = fake_app(tmp_path, [(Plugin(), "sloppy")], diagnoser="sloppy").run_turn_sync(TurnRequest(image=bright))
    probs = {e.condition_id: e.probability for e in result.diagnosis.differential}
    assert probs == {"psoriasis": 0.5, "atopic_eczema": 0.5}
    assert any("not in DermChat's vocabulary" in n for n in result.notices)


def test_observers_and_notice_hooks_are_called_and_isolated(tmp_path: Path, bright: Path) -> None:
    seen = []

    class Observer:
        @hookimpl
        def turn_completed(self, result, context):
            seen.append((result.turn_id, context.image_sha256))

        @hookimpl
        def extra_notices(self, result, audience):
            return [f"Study notice for {audience}"]

    class Crashing:
        @hookimpl
        def turn_completed(self, result, context):
            raise RuntimeError("disk full")

    app = fake_app(tmp_path, [(Observer(), "observer"), (Crashing(), "crashing")])
    result = app.run_turn_sync(TurnRequest(image=bright, audience="clinician"))
    assert seen == [(result.turn_id, result.image_sha256)]
    assert "Study notice for clinician" in result.notices
    assert any("turn_completed failed (RuntimeError) (error id" in e for e in app.plugins.records["crashing"].errors)


def test_failing_hub_diagnoser_falls_back_to_the_offline_model_in_the_same_turn(tmp_path: Path, bright: Path) -> None:
    from fake_plugins import FakeDiagnoser

    class Gated(Diagnoser):
        id = "gated-vlm"
        label = "Gated VLM"

        def diagnose(self, ctx):
            raise ProviderError("the model is gated: set HF_TOKEN")

    class OfflineStandIn(FakeDiagnoser):
        id = "ham-cnn"

    class Plugin:
        @hookimpl
        def register_diagnosers(self, register):
            register(Gated())
            register(OfflineStandIn())

    result = fake_app(tmp_path, [(Plugin(), "gated")], diagnoser="gated-vlm").run_turn_sync(TurnRequest(image=bright))
    assert result.status == "ok" and result.providers["diagnoser"].id == "ham-cnn"
    assert any("set HF_TOKEN" in n and "offline image model" in n for n in result.notices)
    assert result.errors[0].provider_id == "gated-vlm"
