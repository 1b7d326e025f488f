"""Parser contract on recorded answer shapes: valid JSON, prose-wrapped, broken, garbage, synonyms, percentages."""

from __future__ import annotations

import json

import pytest

from dermchat.vlm.jsonrepair import loads_lenient
from dermchat.vlm.parser import (
    NO_STRUCTURED_NOTICE,
    UNREADABLE_NOTICE,
    ConditionMapper,
    parse_likelihood,
    parse_response,
    parse_triage,
)
from dermchat.vlm.prompt import build_messages, history_messages, to_openai_messages
from dermchat.vlm.streaming import RationaleStream, visible_rationale
from dermchat.vocabulary import get_vocabulary

PID = "transformers-vlm"


@pytest.fixture(scope="module")
def lexical() -> ConditionMapper:
    """Vocabulary lookup only: most cases must not depend on the embedding model."""
    return ConditionMapper(use_embeddings=False)


def _probs(diagnosis) -> dict[str, float]:
    return {e.condition_id: round(e.probability, 4) for e in diagnosis.differential}


def test_valid_json_answer_maps_ids_and_keeps_fields(lexical: ConditionMapper) -> None:
    answer = (
        "The spot is evenly brown with a regular border, which usually points to a harmless mole.\n\n"
        "```json\n"
        + json.dumps(
            {
                "morphology": {
                    "primary_lesion": "macule",
                    "colour": "uniform brown",
                    "border": "regular",
                    "surface": "smooth",
                    "distribution": "solitary",
                },
                "differential": [
                    {"condition": "melanocytic_nevus", "likelihood": 0.7},
                    {"condition": "melanoma", "likelihood": 0.2},
                    {"condition": "benign_keratosis", "likelihood": 0.1},
                ],
                "triage": "routine",
                "rationale": "Even colour and border.",
            }
        )
        + "\n```"
    )
    d = parse_response(answer, provider_id=PID, provider_version="m", mapper=lexical)
    assert _probs(d) == {"melanocytic_nevus": 0.7, "melanoma": 0.2, "benign_keratosis": 0.1}
    assert d.prediction_set == ["melanocytic_nevus", "melanoma"]  # 0.7 + 0.2 reaches 0.9
    assert d.triage_hint == "routine"
    assert d.morphology == {
        "primary_lesion": "macule",
        "colour": "uniform brown",
        "border": "regular",
        "surface": "smooth",
        "distribution": "solitary",
    }
    assert d.rationale.startswith("The spot is evenly brown")  # the streamed prose, not the JSON field
    assert NO_STRUCTURED_NOTICE not in d.notices
    assert d.extra["parsed_json"] is True


def test_json_only_answer_takes_the_rationale_field(lexical: ConditionMapper) -> None:
    answer = (
        '```json\n{"differential": [{"condition": "Psoriasis", "likelihood": 1}], "triage": "routine", '
        '"rationale": "Silvery scale on a well demarcated pink plaque."}\n```'
    )
    d = parse_response(answer, provider_id=PID, mapper=lexical)
    assert _probs(d) == {"psoriasis": 1.0}
    assert d.rationale == "Silvery scale on a well demarcated pink plaque."


def test_synonyms_percentages_duplicates_and_renormalising(lexical: ConditionMapper) -> None:
    answer = (
        "Here is my assessment: {'differential': [{'name': 'Nevus', 'probability': '50%'}, "
        "{'name': 'mole', 'probability': '10%'}, {'name': 'BCC', 'probability': '20%'}, "
        "{'name': 'seborrhoeic keratosis', 'probability': '20%'},], 'triage': 'non-urgent'}"
    )
    d = parse_response(answer, provider_id=PID, mapper=lexical)
    # nevus + mole merge onto one id; the total is renormalised to 1.
    assert _probs(d) == {"melanocytic_nevus": 0.6, "basal_cell_carcinoma": 0.2, "benign_keratosis": 0.2}
    assert abs(sum(e.probability for e in d.differential) - 1) < 1e-9
    assert d.triage_hint == "routine"
    assert d.differential[0].label == "Nevus / mole"


def test_unquoted_keys_bare_words_and_dict_shaped_differential(lexical: ConditionMapper) -> None:
    answer = "{differential: {melanoma: 60, 'actinic keratosis': 40}, triage: urgent, morphology: {color: black, border: irregular}}"
    d = parse_response(answer, provider_id=PID, mapper=lexical)
    assert _probs(d) == {"melanoma": 0.6, "actinic_keratosis": 0.4}
    assert d.triage_hint == "urgent"
    assert d.morphology == {"colour": "black", "border": "irregular"}


def test_truncated_json_keeps_complete_entries(lexical: ConditionMapper) -> None:
    answer = (
        'Irregular pigment network.\n```json\n{"differential": [{"condition": "melanoma", "likelihood": 0.5}, '
        '{"condition": "melanocytic_nevus", "likelihood": 0.3}, {"condition": "derma'
    )
    d = parse_response(answer, provider_id=PID, mapper=lexical)
    assert _probs(d) == {"melanoma": 0.625, "melanocytic_nevus": 0.375}


def test_unknown_names_are_left_out_with_a_notice(lexical: ConditionMapper) -> None:
    answer = '{"differential": [{"condition": "Kaposi sarcoma", "likelihood": 0.5}, {"condition": "psoriasis", "likelihood": 0.5}]}'
    d = parse_response(answer, provider_id=PID, mapper=lexical)
    assert _probs(d) == {"psoriasis": 1.0}
    assert any("Kaposi sarcoma" in n for n in d.notices)
    assert d.extra["unmatched"] == ["Kaposi sarcoma"]


def test_rambling_answer_falls_back_to_rationale_only(lexical: ConditionMapper) -> None:
    answer = "This looks like it could be many things. I would suggest asking a dermatologist to look at it in person."
    d = parse_response(answer, provider_id=PID, mapper=lexical)
    assert d.differential == [] and d.prediction_set == []
    assert d.rationale == answer
    assert d.notices == [NO_STRUCTURED_NOTICE]
    assert d.extra["structured"] is False


def test_garbage_gives_no_rationale_and_an_honest_notice(lexical: ConditionMapper) -> None:
    d = parse_response("zemazema\x15T��zema&zema44 ;od;od ]]{{", provider_id=PID, mapper=lexical)
    assert d.differential == [] and d.rationale == ""
    assert d.notices == [UNREADABLE_NOTICE]


def test_json_without_likelihoods_gets_equal_weight_and_says_so(lexical: ConditionMapper) -> None:
    d = parse_response('{"differential": ["eczema", "psoriasis"]}', provider_id=PID, mapper=lexical)
    assert _probs(d) == {"atopic_eczema": 0.5, "psoriasis": 0.5}
    assert any("without likelihoods" in n for n in d.notices)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0.35, 0.35), ("35%", 0.35), ("0.35", 0.35), (35, 0.35), ("high", 0.6), ("n/a", None), (True, None), (-3, None)],
)
def test_parse_likelihood(raw: object, expected: float | None) -> None:
    assert parse_likelihood(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("urgent", "urgent"),
        ("Non-urgent", "routine"),
        ("see a GP for a routine check", "routine"),
        ("reassure", "reassure"),
        ("same-day review", "urgent"),
        ("", None),
        ("banana", None),
    ],
)
def test_parse_triage(raw: str, expected: str | None) -> None:
    assert parse_triage(raw) == expected


def test_repair_handles_trailing_commas_quotes_and_python_literals() -> None:
    assert loads_lenient("{'a': True, 'b': None, 'c': [1, 2,],}") == {"a": True, "b": None, "c": [1, 2]}
    assert loads_lenient("{'note': \"Bowen's disease\", 'x': 'it isn't'}") == {
        "note": "Bowen's disease",
        "x": "it isn't",
    }
    assert loads_lenient("nothing here") is None


def test_json_repair_alone_swallows_an_apostrophe_that_ends_an_object() -> None:
    """Why ``loads_lenient`` escapes inner apostrophes before handing the text to json-repair."""
    import json_repair

    answer = "{'differential': [{'likelihood': 0.6, 'condition': 'Bowen's disease'}, {'likelihood': 0.4, 'condition': 'psoriasis'}]}"
    raw = json_repair.loads(answer)
    assert raw["differential"][0]["condition"] != "Bowen's disease"  # the library alone mis-closes the string
    assert loads_lenient(answer)["differential"] == [
        {"likelihood": 0.6, "condition": "Bowen's disease"},
        {"likelihood": 0.4, "condition": "psoriasis"},
    ]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # missing commas between entries and unescaped quotes inside a string: the hand-written repair gave up here
        (
            '{"differential": [{"condition": "acne" "likelihood": 0.6} {"condition": "rosacea", "likelihood": 0.4}]}',
            {"differential": [{"condition": "acne", "likelihood": 0.6}, {"condition": "rosacea", "likelihood": 0.4}]},
        ),
        (
            '{"rationale": "a "target" lesion", "differential": ["nevus"]}',
            {"rationale": 'a "target" lesion', "differential": ["nevus"]},
        ),
        # an example object first, then the answer: the larger object is the answer
        (
            'Format: ```json\n{"a": 1}\n```\nAnswer:\n```json\n{"differential": ["acne"], "triage": "routine"}\n```',
            {"differential": ["acne"], "triage": "routine"},
        ),
    ],
)
def test_repair_of_other_common_model_mistakes(answer: str, expected: dict[str, object]) -> None:
    assert loads_lenient(answer) == expected


def test_embedding_similarity_maps_free_text_and_rejects_unrelated() -> None:
    mapper = ConditionMapper()
    assert mapper.map("pigmented basal cell carcinoma")[0] == "basal_cell_carcinoma"  # head noun, no embedding needed
    cid, how = mapper.map("lentigo maligna melanoma")
    assert cid == "melanoma"
    for text, expected in [("seborrhoeic keratoses", "benign_keratosis"), ("hemangioma of infancy", "vascular_lesion")]:
        cid, how = mapper.map(text)
        assert (cid, how.split()[0]) == (expected, "embedding")
    assert mapper.map("cutaneous lymphoma") == (None, "unmatched")
    assert mapper.map("banana bread")[0] is None


def test_prompt_lists_vocabulary_carries_history_and_converts_to_openai() -> None:
    vocab = get_vocabulary()
    history = [
        {"role": "assistant", "content": "welcome"},  # leading assistant message is dropped
        {"role": "user", "content": "I have a spot"},
        {"role": "assistant", "content": "Most likely a mole."},
    ]
    messages = build_messages(vocab, "clinician", "Has it changed?", history)
    system = messages[0]["content"][0]["text"]
    assert all(f"- {cid}:" in system for cid in vocab.ids())
    assert "dermatological terms" in system and "primary_lesion" in system
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1]["content"][0] == {"type": "image"}
    assert '"Has it changed?"' in messages[-1]["content"][1]["text"]
    patient = build_messages(vocab, "patient", "", [], system_as_user=True)
    assert [m["role"] for m in patient] == ["user"] and "plain words" in patient[0]["content"][1]["text"]
    openai = to_openai_messages(messages, "data:image/jpeg;base64,AAAA")
    assert openai[1] == {"role": "user", "content": "I have a spot"}
    assert openai[-1]["content"][0] == {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}
    assert history_messages([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]) == []


def test_rationale_stream_shows_prose_then_stops_at_json() -> None:
    shown: list[str] = []
    stream = RationaleStream(lambda msg, frac: shown.append(msg), min_interval_s=0)
    for chunk in ["The lesion ", "is brown", ' and even.\n```json\n{"differential"', ": []}\n```"]:
        stream.add(chunk)
    full = stream.finish()
    assert shown == ["The lesion", "The lesion is brown", "The lesion is brown and even."]
    assert full.endswith("```")
    assert visible_rationale('{"rationale": "Even colour and bor') == "Even colour and bor"


def test_partial_rationale_field_is_decoded_like_json() -> None:
    """A JSON-first answer streams its rationale with JSON escapes decoded, cut-off string and all."""
    partial = '```json\n{"differential": [], "rationale": "Caf\\u00e9-au-lait \\"spots\\",\\tround and ev'
    assert visible_rationale(partial) == 'Café-au-lait "spots",\tround and ev'
