"""The web page's side panel as ``dermchat.render`` writes it: bars, prediction set, badge and sources, the same
words the chat answer uses, with nothing drawn for a photo the model abstained on."""

from __future__ import annotations

from dermchat.render import (
    CANT_ASSESS_PANEL,
    differential_bars,
    prediction_set_panel,
    render_diagnosis,
    render_sources,
    triage_badge,
)
from dermchat.results import Citation, Diagnosis, DifferentialEntry, Explanation, Triage, TurnResult
from dermchat.vocabulary import get_vocabulary


def diagnosis(**changes: object) -> Diagnosis:
    base = Diagnosis(
        provider_id="fake",
        prediction_set=["melanoma"],
        differential=[
            DifferentialEntry(condition_id="melanoma", probability=0.6),
            DifferentialEntry(condition_id="melanocytic_nevus", probability=0.4),
        ],
    )
    return base.model_copy(update=changes)


def test_bars_mark_the_prediction_set_and_the_set_reads_as_in_the_answer() -> None:
    vocab = get_vocabulary()
    melanoma, mole = (vocab.get(c).name("patient") for c in ("melanoma", "melanocytic_nevus"))
    assert differential_bars(diagnosis(), "patient") == {f"{melanoma} ✓": 0.6, mole: 0.4}
    panel = prediction_set_panel(diagnosis(), "patient")
    assert panel.startswith(f"**The answer is likely one of:** {melanoma}")
    assert f"**The answer is likely one of:** {melanoma}." in render_diagnosis(diagnosis(), "patient", vocab)


def test_an_abstained_photo_shows_no_bars_and_says_why() -> None:
    abstained = diagnosis(abstained=True)
    assert differential_bars(abstained, "patient") is None
    assert prediction_set_panel(abstained, "patient") == CANT_ASSESS_PANEL
    assert differential_bars(None, "patient") is None and prediction_set_panel(None, "patient") == ""


def test_badge_and_sources_are_empty_when_the_turn_has_none() -> None:
    assert triage_badge(None, "patient") == ""
    assert 'class="triage-badge triage-urgent"' in triage_badge(Triage(tier="urgent", reason="r"), "patient")
    explanation = Explanation(
        provider_id="kb",
        text="t",
        citations=[Citation(marker="[1]", source_id="nhs", title="NHS", url="https://nhs.uk")] * 2,
    )
    assert (
        render_sources(TurnResult(turn_id="t", explanation=explanation)) == "**Sources**\n- [1] [NHS](https://nhs.uk)"
    )
    assert render_sources(TurnResult(turn_id="t")) == ""
