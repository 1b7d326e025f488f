"""The learned red-flag screen: it finds what the rules miss, only ever adds, and its weights are what the training
command makes from the packaged phrasings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dermchat.paths import DATA_PACKAGE_DIR
from dermchat.redflags import learned
from dermchat.redflags.evaluate import PHRASING_SETS, load_phrasings
from dermchat.redflags.learned import LEARNED_PREFIX, MODEL_FILE, LearnedScreen, learned_hits, ngrams
from dermchat.redflags.screen import notice, screen
from dermchat.redflags.train import train

KB = DATA_PACKAGE_DIR / "kb"


@pytest.mark.parametrize(
    "text, sign, urgency",
    [  # each written by someone who never saw the rules, and none of them matched a rule
        (
            "Got a boil or somethin on my backside, big as a golf ball, hot as a stove and hurts so bad I can't sit "
            "nor sleep. Been 3 days.",
            "severe_pain",
            "now",
        ),
        (
            "can't stop scratching at the mole on my lower back lately, like there's ants under it. nothing else on my "
            "skin does that",
            "itchy_mole",
            "soon",
        ),
        (
            "Knocked the skin tag on my neck with my necklace, held tissue against it for 20 min and it's still going, "
            "dripping down my collar",
            "bleeding_wont_stop",
            "now",
        ),
    ],
)
def test_the_learned_screen_finds_a_sign_no_rule_matches_and_names_it(text: str, sign: str, urgency: str) -> None:
    assert screen(text, learned=False) == []
    (hit,) = screen(text)
    assert (hit.id, hit.urgency) == (LEARNED_PREFIX + sign, urgency)
    assert (KB / f"{hit.source}.md").exists() and hit.what  # the notice and the KB entry are that sign's
    assert f"you mentioned what may be {hit.what}" in (notice([hit]) or "")  # not words the user used


def test_the_learned_screen_is_asked_only_when_no_rule_fires() -> None:
    rows = load_phrasings(PHRASING_SETS["dev"]) + load_phrasings(PHRASING_SETS["heldout"])
    for row in rows:
        rules_only, both = screen(row["text"], learned=False), screen(row["text"])
        assert both == rules_only if rules_only else all(h.id.startswith(LEARNED_PREFIX) for h in both)
    # it would have said "now" to this one ("since yesterday" is in many of its "now" examples): the rule answers
    assert [(h.id, h.urgency) for h in screen("it has started bleeding since yesterday")] == [
        ("bleeding_lesion", "soon")
    ]


def test_without_its_weights_the_rules_still_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(learned, "learned_screen", lambda path=None: None)
    assert [h.id for h in screen("my mole has started bleeding")] == ["bleeding_lesion"]
    assert learned_hits("hurts so bad I can't sit, hot as a stove", []) == []


def test_a_broken_weights_file_is_skipped_and_the_rules_still_screen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / MODEL_FILE
    broken.write_bytes(b"not an npz")
    monkeypatch.setattr(learned, "learned_screen", lambda path=None: LearnedScreen.load(broken))
    assert learned_hits("hurts so bad I can't sit, hot as a stove", []) == []
    assert [h.id for h in screen("my mole has started bleeding")] == ["bleeding_lesion"]


def test_features_see_misspellings_through_letter_pieces() -> None:
    grams = set(ngrams("my moel is bleedin"))
    assert {"w:mole", "w:mole is", "c: bl", "c:eedi"} <= grams  # the rules' spelling fix, then letter pieces


def test_the_packaged_weights_are_what_the_training_command_makes_from_the_phrasings(tmp_path: Path) -> None:
    rows = load_phrasings(PHRASING_SETS["dev"], keep_sign=True)
    model, report = train(rows)
    packaged = LearnedScreen.load(DATA_PACKAGE_DIR / MODEL_FILE)
    assert report["chosen"]["false_alarm_rate"] <= 0.03  # chosen out of fold, on the dev phrasings only
    assert (packaged.flag_threshold, packaged.now_threshold) == pytest.approx(
        (model.flag_threshold, model.now_threshold)
    )
    assert packaged.tfidf.index == model.tfidf.index and packaged.sign_ids == model.sign_ids
    model.save(tmp_path / MODEL_FILE)
    saved = LearnedScreen.load(tmp_path / MODEL_FILE)
    texts = [r["text"] for r in rows[:50]]
    np.testing.assert_allclose(saved.probabilities(texts), packaged.probabilities(texts), atol=1e-6)


def test_training_command_writes_weights_and_a_card_and_refuses_too_little(tmp_path: Path) -> None:
    from dermchat.redflags.train import main

    rows = load_phrasings(PHRASING_SETS["dev"], keep_sign=True)
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join(json.dumps(r) for r in rows[::6]), encoding="utf-8")
    assert main(["--phrasings", str(small), "--out", str(tmp_path / "out")]) == 0
    card = (tmp_path / "out" / "redflag_learned.md").read_text(encoding="utf-8")
    assert "five-fold cross-validation" in card and "Scored once, after choosing" in card
    assert LearnedScreen.load(tmp_path / "out" / MODEL_FILE).sign_ids
    tiny = tmp_path / "tiny.jsonl"
    tiny.write_text('{"text": "a mole", "red_flag": false, "urgency": null}\n', encoding="utf-8")
    assert main(["--phrasings", str(tiny), "--out", str(tmp_path / "no")]) != 0
