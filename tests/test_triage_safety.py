"""Issue 19: red flags in the user's words, an honest "can't assess", guidance-based tiers (fake providers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from core_helpers import fake_app, solid_image

from dermchat.context import TurnContext
from dermchat.engine import DermChat
from dermchat.hookspecs import hookimpl
from dermchat.pathways import get_pathways
from dermchat.providers import Diagnoser
from dermchat.redflags import screen
from dermchat.redflags.evaluate import PHRASING_SETS, evaluate, load_phrasings
from dermchat.render import render
from dermchat.request import TurnRequest
from dermchat.results import TRIAGE_ORDER, Diagnosis, DifferentialEntry
from dermchat.safety import ABSTAIN_NOTICE, SEE_CLINICIAN_ROUTINE, decide_triage
from dermchat.vocabulary import get_vocabulary

ISSUE_MESSAGE = "I have a mole on my back that has started bleeding and it itches"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def bright(tmp_path: Path) -> Path:
    return solid_image(tmp_path / "bright.png", (200, 160, 140))


def _dx(probs: dict[str, float], prediction_set: list[str], **kw: Any) -> Diagnosis:
    return Diagnosis(
        provider_id="t",
        differential=[DifferentialEntry(condition_id=c, probability=p) for c, p in probs.items()],
        prediction_set=prediction_set,
        **kw,
    )


def _with_diagnoser(tmp_path: Path, diagnosis: Diagnosis) -> DermChat:
    class Fixed(Diagnoser):
        id = "fixed"
        label = "fixed answer"

        def diagnose(self, ctx: TurnContext) -> Diagnosis:
            return diagnosis

    class Plugin:
        @hookimpl
        def register_diagnosers(self, register: Callable[[Diagnoser], None]) -> None:
            register(Fixed())

    return fake_app(tmp_path, [(Plugin(), "fixed")], diagnoser="fixed")


# -- item 1: red flags in the user's words -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, rule",
    [
        (ISSUE_MESSAGE, "bleeding_lesion"),
        ("my moel is bleading", "bleeding_lesion"),  # misspellings
        ("I have shingels near my eye", "eye_involvement"),
        ("tiny purpel spots that don't fade when I press a glass on them", "non_blanching"),
        ("a sore on my nose that wont heal", "nonhealing_sore"),
        # a colour change told as a story, the lesion word ten words before the itch (found by a chat session)
        ("a freckle on my back went from light brown to black and itches now", "changing_mole"),
        ("my mole has turned black", "changing_mole"),
        ("my newborn has spots and is not feeding", "baby_not_feeding"),  # a sign that is itself a negation
        ("my throat feels tight and I have hives everywhere", "anaphylaxis"),
        # after another subject, the itch is placed at the mole; blood found on bedding and traced to it
        ("I have a mole and my back itches around it", "itchy_mole"),
        ("found blood on my pillow from the mole on my neck", "bleeding_lesion"),
        ("a scaly lump on my scalp grew a lot in two weeks", "growing_lump"),
    ],
)
def test_red_flags_are_found_in_the_users_words_and_misspellings(text: str, rule: str) -> None:
    assert rule in [hit.id for hit in screen(text)]


@pytest.mark.parametrize(
    "text",
    [
        "my mole is not bleeding and hasn't changed",
        "no fever and no swelling",
        "what is a mole?",
        "my cold sore is healing nicely",
        "my freckles get darker every summer",  # many freckles darkening in the sun is normal
        "my tan went darker on holiday",
        # real words the spelling fixer used to turn into key words: "every" and "never" became "fever" (a
        # get-help-now flag for an ordinary rash), "unchanged" became "changed"
        "every day I get a rash on my arm",
        "I never get a rash in the sun",
        "my mole is unchanged",
        "I'm feeling fine, it is just a dry patch",
        "my eye is red from hay fever",  # used to ask for medical help now
        # the sign belongs to another subject of the sentence, not the mole (used to say "see a doctor soon")
        "a mole on my back and my eczema itches",
        "my mole is fine but my psoriasis is spreading to my elbows",
        "I've had this mole forever, my dermatitis keeps crusting though",
        "I had a blood test, are my moles anything to worry about?",
    ],
)
def test_negated_or_plain_messages_raise_no_red_flag(text: str) -> None:
    assert screen(text) == []


def test_no_common_english_word_is_corrected_into_a_key_word() -> None:
    """Every whole word of the MiniLM vocabulary (about 22,000 common English words) that the spelling fixer would
    match to a key word is on the protected list, so adding a key word cannot bring "never" -> "fever" back."""
    import difflib

    from dermchat.knowledge.embeddings import common_words
    from dermchat.redflags.spelling import FUZZY_CUTOFF, KEY_WORDS, MIN_FUZZY_LENGTH, normalise, real_words

    vocabulary = common_words()  # the same list keeps the retrieval's spelling fixer off real words
    if not vocabulary:
        pytest.skip("the MiniLM package (its vocab.txt) is not installed")
    words = {w for w in vocabulary if len(w) >= MIN_FUZZY_LENGTH and w not in KEY_WORDS}
    colliding = {w for w in words if difflib.get_close_matches(w, KEY_WORDS, n=1, cutoff=FUZZY_CUTOFF)}
    assert len(colliding) > 100 and colliding <= real_words()
    assert normalise("never every feeling unchanged single") == "never every feeling unchanged single"
    assert normalise("my moel is bleading") == "my mole is bleeding"  # real misspellings are still fixed


def test_phrasing_sets_are_large_enough_and_the_screen_meets_its_figures() -> None:
    dev = load_phrasings(PHRASING_SETS["dev"])
    assert len(dev) >= 60 and 0.4 <= sum(r["red_flag"] for r in dev) / len(dev) <= 0.6  # both kinds, in bulk
    figures = evaluate(dev)
    assert figures["sensitivity"] >= 0.95 and figures["false_alarm_rate"] <= 0.05
    heldout = evaluate(load_phrasings(PHRASING_SETS["heldout"]))  # written after the rules (two misses since read)
    assert heldout["sensitivity"] >= 0.75 and heldout["false_alarm_rate"] <= 0.1
    # written by someone who never saw the rules, and never read by whoever changes them: 0.85 / 0.05 (6 misses, 2 false alarms)
    blind = evaluate(load_phrasings(PHRASING_SETS["blind"]))
    assert len(blind["misses"]) <= 8 and len(blind["false_alarms"]) <= 4 and blind["n"] == 80
    # written blind, scored once (rules + learned screen: 0.95 / 0.017), never tuned on
    heldout2 = evaluate(load_phrasings(PHRASING_SETS["heldout2"]))
    assert heldout2["sensitivity"] >= 0.9 and heldout2["false_alarm_rate"] <= 0.05


def test_text_only_red_flag_gets_a_tier_and_a_see_a_doctor_notice(tmp_path: Path) -> None:
    # It used to get "A mole is a harmless group of cells..." and no advice to see anyone.
    result = fake_app(tmp_path).run_turn_sync(TurnRequest(image=None, question=ISSUE_MESSAGE))
    assert result.status == "no_image" and result.triage is not None and result.triage.tier == "urgent"
    assert any("see a doctor soon" in n.lower() and "bleeds" in n for n in result.notices)
    assert "see a doctor soon" in render(result, "patient").lower()


def test_same_day_red_flag_says_now_not_in_two_weeks(tmp_path: Path) -> None:
    result = fake_app(tmp_path).run_turn_sync(
        TurnRequest(image=None, question="I have a fever and the redness on my leg is spreading")
    )
    assert result.triage.same_day and result.triage.tier == "urgent"
    text = render(result, "patient")
    assert "help today" in text and "within about two weeks" not in text


def test_red_flag_in_a_follow_up_overrides_a_calm_photo(tmp_path: Path, bright: Path) -> None:
    app = fake_app(tmp_path)
    first = app.run_turn_sync(TurnRequest(image=bright, question=""))
    assert first.triage.tier == "reassure"
    follow = app.run_turn_sync(
        TurnRequest(image=None, question="it has started bleeding since yesterday", previous=first)
    )
    assert follow.status == "followup" and follow.triage.tier == "urgent"
    again = app.run_turn_sync(
        TurnRequest(image=None, question="ok thanks", previous=follow)
    )  # the warning sign is not forgotten
    assert again.triage.tier == "urgent" and any("bleeds" in n for n in again.notices)


def test_red_flag_with_a_photo_sets_the_tier_whatever_the_photo_says(tmp_path: Path, bright: Path) -> None:
    result = fake_app(tmp_path).run_turn_sync(TurnRequest(image=bright, question="this mole keeps bleeding"))
    assert result.diagnosis.top(1)[0].condition_id == "melanocytic_nevus"
    assert result.triage.tier == "urgent" and result.red_flags


def test_turn_without_a_photo_runs_from_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "DERMCHAT_WORKDIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "dermchat", "turn", "--question", ISSUE_MESSAGE, "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["triage"]["tier"] == "urgent" and out["red_flags"][0]["id"] == "bleeding_lesion"
    assert "[quality] skipped" in run.stderr and "[diagnosis] skipped" in run.stderr
    empty = subprocess.run(
        [sys.executable, "-m", "dermchat", "turn"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert empty.returncode == 2 and "give a photo, a --question, or both" in empty.stderr


def test_eval_redflags_reports_sensitivity_and_false_alarms() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "dermchat", "eval-redflags", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout)
    assert {"dev", "heldout", "blind"} <= set(figures) and figures["dev"]["n"] >= 60
    assert {"sensitivity", "false_alarm_rate"} <= set(figures["heldout"])
    # the blind set's texts stay out of the report unless asked for, so reading it does not make it a dev set
    assert "misses" in figures["dev"] and all(
        "misses" not in f for name, f in figures.items() if name.startswith("blind")
    )
    assert figures["blind"]["misses_count"] == round(
        (1 - figures["blind"]["sensitivity"]) * figures["blind"]["red_flags"]
    )


# -- item 2: "can't assess" --------------------------------------------------------------------------------------
def test_an_abstention_is_its_own_tier_and_never_reads_as_routine(tmp_path: Path, bright: Path) -> None:
    abstained = Diagnosis(provider_id="fixed", abstained=True, abstain_reason="the image model is out of its depth")
    result = _with_diagnoser(tmp_path, abstained).run_turn_sync(TurnRequest(image=bright, question=""))
    assert result.status == "abstained" and result.triage.tier == "cant_assess"
    assert TRIAGE_ORDER["cant_assess"] == TRIAGE_ORDER["urgent"] > TRIAGE_ORDER["routine"]  # never calmer
    for audience in ("patient", "clinician"):
        text = render(result, audience)
        assert "can't be assessed" in text.lower() and "routine visit" not in text
        assert "dermoscope" in text  # the model's scope is told to patients too, not only in the rationale
        assert "likely one of" not in text
    assert ABSTAIN_NOTICE in result.notices and "new, changing, bleeding" in ABSTAIN_NOTICE
    assert "show the spot to a doctor" in render(result, "patient")


def test_an_abstention_that_still_flags_melanoma_stays_urgent() -> None:
    # What the model saw before abstaining (its own melanoma threshold fired) must not be calmed by the abstention.
    dx = Diagnosis(
        provider_id="ham-cnn", abstained=True, extra={"melanoma_probability": 0.4, "melanoma_threshold": 0.2}
    )
    triage = decide_triage(dx, get_vocabulary())
    assert triage.tier == "urgent" and triage.drivers == ["melanoma"]


# -- item 3: tiers follow guidance ---------------------------------------------------------------------------------
def test_every_condition_has_a_pathway_with_a_source() -> None:
    pathways = get_pathways()
    assert set(pathways) == set(get_vocabulary().ids())
    assert all(p.source.startswith("https://") and p.reason and p.pathway for p in pathways.values())


@pytest.mark.parametrize(
    "condition, tier",
    [
        ("melanoma", "urgent"),
        ("squamous_cell_carcinoma", "urgent"),
        ("basal_cell_carcinoma", "routine"),
        ("actinic_keratosis", "routine"),
        ("melanocytic_nevus", "reassure"),
    ],
)
def test_tier_follows_the_nice_pathway(condition: str, tier: str) -> None:
    triage = decide_triage(_dx({condition: 1.0}, [condition]), get_vocabulary())
    assert triage.tier == tier and triage.sources and triage.pathway


def test_bcc_with_the_models_urgent_hint_is_a_routine_referral_that_still_says_see_a_doctor(
    tmp_path: Path, bright: Path
) -> None:
    # ham-cnn hints "urgent" whenever a malignant label is in its set; NICE NG12 refers suspected BCC routinely.
    dx = _dx(
        {"basal_cell_carcinoma": 0.8, "melanocytic_nevus": 0.2},
        ["basal_cell_carcinoma"],
        triage_hint="urgent",
        extra={"melanoma_probability": 0.01, "melanoma_threshold": 0.2},
    )
    result = _with_diagnoser(tmp_path, dx).run_turn_sync(TurnRequest(image=bright, question=""))
    assert result.triage.tier == "routine" and "NG12" in (result.triage.pathway or "")
    assert SEE_CLINICIAN_ROUTINE in result.notices
    patient = render(result, "patient")
    assert "URGENT" not in patient and "two weeks" not in patient
    assert "non-urgent" in patient.lower() and "not urgently" in patient
    melanoma_flag = dx.model_copy(update={"extra": {"melanoma_probability": 0.3, "melanoma_threshold": 0.2}})
    assert decide_triage(melanoma_flag, get_vocabulary()).tier == "urgent"  # the model's melanoma alarm stands


def test_benign_result_reassures_with_the_abcde_watch_list(tmp_path: Path, bright: Path) -> None:
    result = fake_app(tmp_path).run_turn_sync(TurnRequest(image=bright, question=""))
    assert result.triage.tier == "reassure" and "ABCDE" in render(result, "patient")
