"""Per-study answer options (validated at load), two separate labelled scales, feedback into the study."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from study_fixtures import BETWEEN, WITHIN, load, make_app
from test_study_definition import GOOD, rejected, write

from dermchat.study.definition import LikertItem, load_study
from dermchat.study.export import export
from dermchat.study.session import FlowError, StudyFlow
from dermchat.study.store import StudyStore
from dermchat.vocabulary import get_vocabulary

HAM_TYPES = {
    "melanocytic_nevus",
    "melanoma",
    "benign_keratosis",
    "basal_cell_carcinoma",
    "actinic_keratosis",
    "dermatofibroma",
    "vascular_lesion",
}


def names(ids: set[str]) -> set[str]:
    vocab = get_vocabulary()
    return {vocab.get(c).patient_name for c in ids}


def test_shipped_study_offers_the_seven_lesion_types_not_the_whole_vocabulary(ham_dir: Path) -> None:
    guess = load(WITHIN).case_questions[0]
    assert set(guess.options()) == names(HAM_TYPES) | {"I don't know"}  # was 46 options


def test_default_options_are_the_conditions_the_cases_can_be(tmp_path: Path, ham_dir: Path) -> None:
    study = load_study(write(tmp_path, GOOD))
    assert set(study.case_questions[0].options()) == names({"melanocytic_nevus", "melanoma"}) | {"I don't know"}


@pytest.mark.parametrize(
    ("conditions", "words"),
    [
        ("[nv, mel, not_a_condition]", "unknown condition 'not_a_condition'"),
        ("[nv, bcc]", "'mel' is not among the study's conditions"),
        ("[nv, mel, melanoma]", "listed twice"),
    ],
)
def test_bad_answer_options_are_rejected_at_load(tmp_path: Path, ham_dir: Path, conditions: str, words: str) -> None:
    error = rejected(tmp_path, GOOD.replace("case_questions:", f"conditions: {conditions}\ncase_questions:"))
    assert words in str(error) and error.first_line is not None


def test_conditions_question_needs_something_to_offer(tmp_path: Path, ham_dir: Path) -> None:
    text = GOOD.replace(", ground_truth: nv}", "}").replace(", ground_truth: mel}", "}").replace(", scored: true", "")
    assert "needs a 'conditions' list" in str(rejected(tmp_path, text))


@pytest.mark.parametrize("path", [WITHIN, BETWEEN])
def test_worry_and_how_soon_are_separate_scales_with_every_point_labelled(path: Path, ham_dir: Path) -> None:
    scales = {item.id: item for item in load(path).case_questions if isinstance(item, LikertItem)}
    worry, soon = scales["worry"], scales["see_doctor"]
    assert "worried" in worry.text and "doctor" in soon.text and "urgency" not in scales
    for item in (worry, soon):
        assert len(item.anchors) == item.scale and all(" – " in label for label, _ in item.choices())
    assert all("worried" in a.lower() for a in worry.anchors)
    assert not any("worried" in a.lower() for a in soon.anchors)


def test_feedback_inside_a_study_goes_to_its_database_and_export(tmp_path: Path, ham_dir: Path) -> None:
    store = StudyStore(tmp_path / "study.sqlite")
    flow = StudyFlow(load(WITHIN), store)
    app = make_app(tmp_path / "turns")
    state = flow.enter_code(flow.consent(flow.start(), True), None)
    with pytest.raises(FlowError, match="wait for DermChat"):
        flow.feedback(state, "up")
    list(flow.run_case(state, app))
    flow.feedback(state, "flag", "=cmd|' /C calc'!A0")
    with pytest.raises(FlowError, match="unknown rating"):
        flow.feedback(state, "meh")
    [event] = [e for e in store.events(code=state.code) if e["type"] == "feedback"]
    assert event["payload"]["rating"] == "flag" and event["payload"]["result_id"] == f"{flow.study.id}-{state.code}-0"
    assert event["payload"]["providers"]["diagnoser"] == "study-test-diagnoser"
    written = export(store.url, tmp_path / "out")
    with written["feedback.csv"].open(newline="") as fh:
        [row] = list(csv.DictReader(fh))
    assert row["participant"] == state.code and row["rating"] == "flag" and row["case_id"] == state.current.ref
    assert row["comment"] == "'=cmd|' /C calc'!A0"  # formula-safe
