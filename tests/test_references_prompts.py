"""LesionGen-style concept prompts and the defensive knowledge-base reader."""

from __future__ import annotations

from pathlib import Path

from dermchat.references.kb import clean_markdown, how_it_looks, section_sources
from dermchat.references.prompts import NEGATIVE_PROMPT, build_concept_prompt, colour_words, size_phrase
from dermchat.references.skintone import SkinTone

KB_TEXT = """---
id: dermatofibroma
sources:
  - {id: dn-df, title: "DermNet: Dermatofibroma", url: "https://dermnetnz.org/topics/dermatofibroma"}
  - {id: unused, title: "Unused", url: "https://example.org/unused"}
---
## What it is
A harmless bump. [dn-df]

## How it looks
### For patients
- A **firm** bump, brown or pink, often on the legs. [dn-df]
- It dimples when pinched ([DermNet](https://dermnetnz.org/topics/dermatofibroma)).
### For clinicians
Firm dermal papule with a positive dimple sign. Central white scar-like patch on dermoscopy [1].

## Who gets it
Adults.
"""


def write_kb(tmp_path: Path, condition_id: str, text: str) -> Path:
    kb = tmp_path / "kb"
    kb.mkdir(exist_ok=True)
    (kb / f"{condition_id}.md").write_text(text, encoding="utf-8")
    return kb


def test_how_it_looks_reads_the_audiences_subsection_and_cleans_markdown(tmp_path: Path) -> None:
    kb = write_kb(tmp_path, "dermatofibroma", KB_TEXT)
    assert how_it_looks("dermatofibroma", "patient", kb) == [
        "A firm bump, brown or pink, often on the legs.",
        "It dimples when pinched (DermNet).",
    ]
    assert how_it_looks("dermatofibroma", "clinician", kb) == [
        "Firm dermal papule with a positive dimple sign.",
        "Central white scar-like patch on dermoscopy.",
    ]
    assert section_sources("dermatofibroma", "patient", kb) == [
        {"id": "dn-df", "title": "DermNet: Dermatofibroma", "url": "https://dermnetnz.org/topics/dermatofibroma"}
    ]


def test_odd_or_missing_kb_files_give_empty_features(tmp_path: Path) -> None:
    kb = write_kb(tmp_path, "dermatofibroma", KB_TEXT)
    assert how_it_looks("melanoma", "patient", kb) == []  # no file for it
    kb = write_kb(
        tmp_path, "lipoma", "---\nid: lipoma\n---\n## How It Looks\nSoft, rubbery lump under the skin.\n## Next\nx"
    )
    assert how_it_looks("lipoma", "clinician", kb) == ["Soft, rubbery lump under the skin."]
    assert section_sources("lipoma", "patient", kb) == []  # uncited text has no sources
    write_kb(tmp_path, "broken", "no front matter, no headings, just text")
    assert how_it_looks("dermatofibroma", "patient", kb) == []  # an unreadable KB degrades to no features


def test_prompt_combines_kb_morphology_colour_size_site_and_skin_tone(tmp_path: Path) -> None:
    kb = write_kb(tmp_path, "dermatofibroma", KB_TEXT)
    tone = SkinTone(ita=20.0, category="tan", fitzpatrick="IV", lightness=55.0, b=15.0, pixels=500)
    prompt = build_concept_prompt(
        "dermatofibroma", skin_tone=tone, lesion_fraction=0.2, body_site="Lower leg", kb_dir=kb
    )
    assert prompt.prompt.startswith("close-up clinical photograph of dermatofibroma")
    assert "Firm dermal papule with a positive dimple sign" in prompt.prompt
    assert "brown and pink" in prompt.prompt  # patient wording names the everyday colours, in order
    assert "medium-sized lesion" in prompt.prompt and "on the lower leg" in prompt.prompt
    assert "tan skin, Fitzpatrick type IV" in prompt.prompt
    assert prompt.concepts["morphology_source"] == "knowledge base"
    assert prompt.negative_prompt == NEGATIVE_PROMPT and "watermark" in prompt.negative_prompt


def test_vlm_morphology_wins_and_vocabulary_is_the_last_resort(tmp_path: Path) -> None:
    empty = tmp_path / "empty-kb"
    vlm = build_concept_prompt(
        "melanoma",
        morphology={"shape": "asymmetric plaque, irregular border", "colour": "black and blue"},
        kb_dir=empty,
    )
    assert vlm.concepts["morphology_source"] == "vision-language model"
    assert "asymmetric plaque, irregular border" in vlm.prompt and "black and blue" in vlm.prompt
    fallback = build_concept_prompt("melanoma", kb_dir=empty)
    assert fallback.concepts["morphology_source"] == "vocabulary"
    assert "malignant melanoma" in fallback.prompt


def test_helpers() -> None:
    assert colour_words("Dark brown centre with pink rim and dark brown dots") == ["dark brown", "pink"]
    assert [size_phrase(f) for f in (None, 0.02, 0.2, 0.6)] == ["", "small", "medium-sized", "large"]
    assert clean_markdown("**Red** patch [aad-x] see <https://x.org>") == "Red patch see"


def test_packaged_kb_gives_a_prompt_for_every_ham_condition() -> None:
    """The real knowledge base (when present) parses for the classifier's conditions."""
    for condition_id in ("melanocytic_nevus", "melanoma", "basal_cell_carcinoma", "vascular_lesion"):
        prompt = build_concept_prompt(condition_id)
        assert prompt.concepts["condition"]
        assert len(prompt.prompt.split()) < 60  # CLIP reads 77 tokens
