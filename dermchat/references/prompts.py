"""LesionGen-style concept prompts built from the structured turn result.

Why concepts: LesionGen found that prompts naming the condition with its morphology, colour, size, site and
skin tone give more clinically faithful lesion images than the bare condition name. The morphology comes
from the VLM when it described the user's lesion (applied to the most likely condition only: it describes
*this* lesion, not the differentials), else from the knowledge base's "How it looks" section, else from the
vocabulary's names. CLIP text encoders read only 77 tokens, so each concept is kept short.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from dermchat.references.kb import how_it_looks
from dermchat.references.skintone import SkinTone
from dermchat.vocabulary import get_vocabulary

COLOUR_WORDS: tuple[str, ...] = (
    "skin-coloured",
    "skin-colored",
    "flesh-coloured",
    "pearly",
    "translucent",
    "dark brown",
    "light brown",
    "brown",
    "black",
    "blue-grey",
    "blue-gray",
    "blue",
    "grey",
    "gray",
    "pink",
    "red",
    "purple",
    "violet",
    "white",
    "yellow",
    "tan",
    "orange",
    "silvery",
)
NEGATIVE_PROMPT = (
    "text, watermark, logo, ruler, measuring tape, annotation, arrow, cartoon, illustration, drawing, painting, "
    "3d render, deformed, blurry, out of focus, low quality, jpeg artifacts, clothing, tattoo, jewellery, face"
)
MAX_MORPHOLOGY_WORDS = 14


class ConceptPrompt(BaseModel):
    """A prompt, its negative, and the concepts it was built from (recorded with each generated image)."""

    condition_id: str
    prompt: str
    negative_prompt: str = NEGATIVE_PROMPT
    concepts: dict[str, str] = Field(default_factory=dict)


def colour_words(text: str) -> list[str]:
    """Colour terms named in ``text`` in the order they appear ('dark brown' wins over its 'brown')."""
    lowered = text.lower()
    hits: list[tuple[int, str]] = []
    for word in COLOUR_WORDS:  # longest first within a family, so a compound claims its span first
        for match in re.finditer(rf"\b{re.escape(word)}\b", lowered):
            if not any(start <= match.start() < start + len(w) for start, w in hits):
                hits.append((match.start(), word))
    ordered: list[str] = []
    for _, word in sorted(hits):
        if word not in ordered:
            ordered.append(word)
    return ordered


def size_phrase(lesion_fraction: float | None) -> str:
    """How much of the view the lesion fills, in words (there is no scale in a photo, so no millimetres)."""
    if lesion_fraction is None:
        return ""
    if lesion_fraction < 0.08:
        return "small"
    if lesion_fraction < 0.35:
        return "medium-sized"
    return "large"


def _shorten(text: str, words: int = MAX_MORPHOLOGY_WORDS) -> str:
    parts = text.rstrip(".").split()
    return " ".join(parts[:words])


def build_concept_prompt(
    condition_id: str,
    *,
    morphology: dict[str, str] | None = None,
    skin_tone: SkinTone | None = None,
    lesion_fraction: float | None = None,
    body_site: str | None = None,
    modality: str = "close-up clinical photograph",
    kb_dir: Path | None = None,
) -> ConceptPrompt:
    """The prompt for one condition. ``morphology`` is a VLM's description of the user's lesion (or None)."""
    cond = get_vocabulary().get(condition_id)
    concepts: dict[str, str] = {"condition": cond.clinician_name}
    morph = {k.lower(): v for k, v in (morphology or {}).items() if v}
    if morph:
        concepts.update(_described_concepts(morph))
    else:
        concepts.update(_reference_concepts(condition_id, cond.synonyms, kb_dir))
    if "size" not in concepts and size_phrase(lesion_fraction):
        concepts["size"] = size_phrase(lesion_fraction)
    if body_site:
        concepts["body_site"] = body_site.strip().lower()
    if skin_tone is not None:
        concepts["skin_tone"] = f"{skin_tone.category} skin, Fitzpatrick type {skin_tone.fitzpatrick}"
    return ConceptPrompt(condition_id=condition_id, prompt=_prompt_text(modality, concepts), concepts=concepts)


def _described_concepts(morph: dict[str, str]) -> dict[str, str]:
    """Shape, colour and size from a vision-language model's description of the user's own lesion."""
    concepts = {"morphology_source": "vision-language model"}
    shape = "; ".join(v for k, v in morph.items() if k not in {"colour", "color", "size", "site", "body_site"})
    if shape:
        concepts["morphology"] = _shorten(shape)
    colour = morph.get("colour") or morph.get("color")
    if colour:
        concepts["colour"] = _shorten(colour, 6)
    if morph.get("size"):
        concepts["size"] = _shorten(morph["size"], 6)
    return concepts


def _reference_concepts(condition_id: str, synonyms: Sequence[str], kb_dir: Path | None) -> dict[str, str]:
    """Without a description: the knowledge base's "How it looks", else the vocabulary's other names."""
    features = how_it_looks(condition_id, "clinician", kb_dir)
    if not features:
        short = [s for s in synonyms if len(s.split()) <= 3][:2]
        return {
            "morphology_source": "vocabulary",
            **({"morphology": "also called " + ", ".join(short)} if short else {}),
        }
    concepts = {"morphology_source": "knowledge base", "morphology": _shorten(features[0])}
    # Patient text names the everyday colours ("shades of brown, black"); clinician text adds
    # dermoscopic ones ("blue-white veil") that would mislead a clinical-photo prompt.
    colours = colour_words(" ".join(how_it_looks(condition_id, "patient", kb_dir))) or colour_words(" ".join(features))
    if colours:
        concepts["colour"] = " and ".join(colours[:2])
    return concepts


def _prompt_text(modality: str, concepts: dict[str, str]) -> str:
    """The concepts in the order a text-to-image model weighs them: what, its look, where, on whom, then style."""
    parts = [f"{modality} of {concepts['condition'].lower()}"]
    if concepts.get("morphology"):
        parts.append(concepts["morphology"])
    if concepts.get("colour"):
        parts.append(concepts["colour"])
    if concepts.get("size"):
        parts.append(f"{concepts['size']} lesion")
    if concepts.get("body_site"):
        parts.append(f"on the {concepts['body_site']}")
    if concepts.get("skin_tone"):
        parts.append(f"on {concepts['skin_tone']}")
    parts.append("sharp focus, natural light, dermatology")
    return ", ".join(parts)
