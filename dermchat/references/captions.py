"""LesionGen-style captions: one sentence of structured concepts per lesion image, for training and for chat.

Why: LesionGen trains its text-to-image model on captions built from expert annotations (diagnosis, site,
patient, dermoscopic features) instead of a bare class name, and finds the images more faithful. DermChat has
the same facts: the diagnosis (HAM10000 ``dx``, named with the shared vocabulary), the body site, age and sex
from the metadata, and - once ``dermchat.morphology`` is installed - the ABCD descriptors of the lesion
(asymmetry, border, colours, blue-white veil). ``python -m dermchat captions`` writes one caption per image for
``train-lora``, and ``sd-diffusion`` builds its chat-time prompts with the same function, so a LoRA is asked
for images in the words it was trained on.

How a caption is made (``build_caption``):

- Facts become short phrases: the diagnosis is the vocabulary's clinician name without its parenthesis
  ("basal cell carcinoma"); the site is HAM10000's ``localization`` ("lower extremity"); age and sex become
  one person phrase ("a woman in her 50s", "a patient in their 70s", "a male patient under 20"); the
  descriptors become "asymmetric along one axis with an abrupt border, light brown and dark brown colours
  and a blue-white veil" (see ``morphology_phrase``). A fact that is unknown is left out, never guessed.
- ``TEMPLATES`` holds four wordings (prose, a tag list, labelled fields, site first). Each template is a
  tuple of parts; a part is dropped when a field it needs is unknown, so no caption says "on the None".
- Which template, and the order of the morphology features, are drawn from ``random.Random`` seeded with
  (``CAPTION_VERSION``, seed, key) - the key is the image id in training and the condition id at chat time.
  The same seed gives byte-identical captions on every machine; another seed varies the wording.
- Every template names the diagnosis and, when known, the site: the two facts a reader (and a classifier
  checking the generated image) needs.

CLIP text encoders read 77 tokens; the longest caption here is about 45 words, so nothing important is cut.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermchat.references.prompts import NEGATIVE_PROMPT, ConceptPrompt
from dermchat.vocabulary import get_vocabulary

log = logging.getLogger(__name__)

CAPTION_VERSION = "lesiongen-v1"
"""Changes whenever a template or phrase changes: a LoRA records the version its captions were written in."""
DEFAULT_MODALITY = "dermoscopic image"
"""HAM10000 images are dermoscopic; captions and the chat-time prompts of a LoRA trained on them say so."""

TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("{modality} of {diagnosis}", " on the {site}", " of {person}", ", {morphology}"),
    ("{diagnosis}", ", {site}", ", {person}", ", {morphology}", ", {modality}"),
    ("{modality} showing {diagnosis}.", " Site: {site}.", " Patient: {person}.", " Features: {morphology}."),
    ("{site} lesion:", " {diagnosis},", " {morphology},", " {person},", " {modality}"),
)
"""Caption wordings. A part is kept only when every field it names is known; parts are concatenated."""

ASYMMETRY_WORDS = {0: "symmetric", 1: "asymmetric along one axis", 2: "asymmetric along both axes"}
BORDER_BANDS: tuple[tuple[float, str], ...] = (
    (2, "a gradually fading border"),
    (5, "a partly abrupt border"),
    (8, "an abrupt border"),
)
"""A numeric border is read on the ABCD scale: how many of eight segments end abruptly (0-8)."""
_FIELD = re.compile(r"{(\w+)}")


@dataclass(frozen=True)
class LesionFacts:
    """What is known about one lesion image (every field but the condition is optional)."""

    condition_id: str
    site: str | None = None
    age: float | None = None
    sex: str | None = None
    morphology: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Caption:
    text: str
    template: int
    concepts: dict[str, str] = field(default_factory=dict)


def diagnosis_name(condition_id: str) -> str:
    """The vocabulary's clinician name, lower case, without the parenthesis ("benign keratosis-like lesion")."""
    name = get_vocabulary().get(condition_id).clinician_name
    return re.sub(r"\s*\([^)]*\)", "", name).strip().lower()


def site_phrase(site: str | None) -> str | None:
    """HAM10000's site words; free text ("left forearm") is mapped onto them so chat and training agree."""
    if not site or site.strip().lower() in {"unknown", "not given", "none"}:
        return None
    from dermchat.classifier.patient_info import normalise_site

    return normalise_site(site) or " ".join(site.lower().split())


def person_phrase(age: float | None, sex: str | None) -> str | None:
    """'a woman in her 50s', 'a patient in their 70s', 'a male patient under 20', 'a man'; None if neither."""
    sex = (sex or "").strip().lower()
    sex = sex if sex in {"female", "male"} else ""
    if age is None:
        return {"female": "a woman", "male": "a man"}.get(sex)
    if age < 20:
        return f"a {sex + ' ' if sex else ''}patient under 20"
    decade = int(age // 10) * 10
    noun, pronoun = {"female": ("woman", "her"), "male": ("man", "his")}.get(sex, ("patient", "their"))
    return f"a {noun} in {pronoun} {decade}s"


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def border_phrase(border: Any) -> str | None:
    if border is None or isinstance(border, bool):
        return None
    if isinstance(border, str):
        text = border.strip().lower()
        return None if not text else (text if "border" in text else f"a {text} border")
    for upper, words in BORDER_BANDS:
        if float(border) <= upper:
            return words
    return BORDER_BANDS[-1][1]


def colour_phrase(colours: Sequence[str] | None) -> str | None:
    names = [c.strip().lower() for c in colours or () if c and c.strip()]
    if not names:
        return None
    return f"{_and(names)} colour{'s' if len(names) > 1 else ''}"


def morphology_phrase(descriptors: Mapping[str, Any] | None, rng: random.Random | None = None) -> str | None:
    """The ABCD descriptors (``Morphology.as_dict()``) in words; ``rng`` varies the order of the features."""
    if not descriptors:
        return None
    from dermchat.morphology.describe import stolz_asymmetry

    shape = ASYMMETRY_WORDS.get(stolz_asymmetry(descriptors)) if descriptors.get("asymmetry") is not None else None
    features = [
        p
        for p in (
            border_phrase(descriptors.get("border")),
            colour_phrase(descriptors.get("colours")),
            "a blue-white veil" if descriptors.get("blue_white_veil") else None,
        )
        if p
    ]
    if rng is not None:
        rng.shuffle(features)
    if shape and features:
        return f"{shape} with {_and(features)}"
    if features:
        return f"with {_and(features)}"
    return shape


def _rng(seed: int, key: str) -> random.Random:
    digest = hashlib.sha256(f"{CAPTION_VERSION}:{seed}:{key}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def build_caption(
    facts: LesionFacts, *, seed: int = 0, key: str | None = None, modality: str = DEFAULT_MODALITY
) -> Caption:
    """One caption for ``facts``; the same (seed, key) always gives the same words (see the module doc)."""
    rng = _rng(seed, key or facts.condition_id)
    template_index = rng.randrange(len(TEMPLATES))
    values = {
        "modality": modality.strip(),
        "diagnosis": diagnosis_name(facts.condition_id),
        "site": site_phrase(facts.site),
        "person": person_phrase(facts.age, facts.sex),
        "morphology": morphology_phrase(facts.morphology, rng),
    }
    parts = [part for part in TEMPLATES[template_index] if all(values.get(f) for f in _FIELD.findall(part))]
    text = "".join(part.format(**values) for part in parts).strip().rstrip(",")
    text = text[0].upper() + text[1:]
    concepts = {k: str(v) for k, v in values.items() if v}
    if facts.age is not None:
        low = 0 if facts.age < 20 else int(facts.age // 10) * 10
        concepts["age_band"] = f"{low}-{max(low, int(facts.age // 10) * 10) + 9}"
    return Caption(text=text, template=template_index, concepts=concepts)


def caption_prompt(
    condition_id: str,
    *,
    seed: int,
    body_site: str | None = None,
    age: float | None = None,
    sex: str | None = None,
    morphology: Mapping[str, Any] | None = None,
    modality: str = DEFAULT_MODALITY,
) -> ConceptPrompt:
    """A chat-time prompt for ``sd-diffusion`` in the words a DermChat LoRA was trained on."""
    facts = LesionFacts(condition_id, site=body_site, age=age, sex=sex, morphology=morphology)
    caption = build_caption(facts, seed=seed, modality=modality)
    concepts = {**caption.concepts, "caption_version": CAPTION_VERSION, "caption_template": str(caption.template)}
    return ConceptPrompt(
        condition_id=condition_id, prompt=caption.text, negative_prompt=NEGATIVE_PROMPT, concepts=concepts
    )


# -- morphology descriptors (issue 21's module, optional) -------------------------------------------------------
Describer = Callable[..., Any]


def load_describer() -> Describer | None:
    """``dermchat.morphology.describe`` when that module is installed, else None (captions leave morphology out)."""
    try:
        from dermchat.morphology import describe  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        log.info("morphology descriptors unavailable (%s); captions leave them out", exc)
        return None
    return describe  # type: ignore[no-any-return,unused-ignore]


def describe_lesion(describer: Describer | None, image: Any, mask: Any = None) -> dict[str, Any] | None:
    """The descriptors of one image as a plain dict, or None when there is no describer or it fails."""
    if describer is None:
        return None
    try:
        return dict(describer(image, mask).as_dict())
    except Exception as exc:  # noqa: BLE001 - one odd image must not stop a caption run or a turn
        log.warning("morphology description failed: %s", exc)
        return None


# -- python -m dermchat captions ---------------------------------------------------------------------------------
def _mask(data_dir: Path, image_id: str) -> Any:
    import numpy as np
    from PIL import Image

    path = data_dir / "masks" / f"{image_id}.png"
    if not path.is_file():
        return None
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


def caption_records(
    data_dir: Path,
    *,
    seed: int = 0,
    limit: int | None = None,
    describer: Describer | None = None,
    modality: str = DEFAULT_MODALITY,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One JSON-ready record per image of a HAM-layout folder (``limit``: a class-balanced subset)."""
    from PIL import Image

    from dermchat.classifier.data import read_metadata, subsample

    records = read_metadata(data_dir)
    if limit is not None:
        records = subsample(records, limit, seed)
    vocabulary = get_vocabulary()
    rows: Any = records
    if progress:
        from tqdm import tqdm

        rows = tqdm(records, desc="captions", unit="image", mininterval=5, file=sys.stderr)
    out: list[dict[str, Any]] = []
    for record in rows:
        descriptors = None
        if describer is not None:
            with Image.open(data_dir / "images" / f"{record.image_id}.jpg") as im:
                descriptors = describe_lesion(describer, im.convert("RGB"), _mask(data_dir, record.image_id))
        condition_id = vocabulary.from_ham_code(record.dx)
        facts = LesionFacts(
            condition_id, site=record.localization, age=record.age, sex=record.sex, morphology=descriptors
        )
        caption = build_caption(facts, seed=seed, key=record.image_id, modality=modality)
        out.append(
            {
                "image_id": record.image_id,
                "file": f"images/{record.image_id}.jpg",
                "dx": record.dx,
                "condition_id": condition_id,
                "caption": caption.text,
                "template": caption.template,
                "concepts": caption.concepts,
                "morphology": descriptors,
                "seed": seed,
                "version": CAPTION_VERSION,
            }
        )
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dermchat captions", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="HAM-layout folder (metadata.csv, images/, masks/)")
    p.add_argument("--out", type=Path, required=True, help="JSON Lines file to write, one caption per image")
    p.add_argument("--seed", type=int, default=0, help="picks each image's template (same seed, same captions)")
    p.add_argument("--limit", type=int, default=None, help="caption only N images, every class represented")
    p.add_argument("--modality", default=DEFAULT_MODALITY, help=f"first words of each caption ({DEFAULT_MODALITY!r})")
    p.add_argument("--no-morphology", action="store_true", help="leave the ABCD descriptors out")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from dermchat.classifier.data import DataError

    if args.limit is not None and args.limit < 1:
        print("error: --limit must be at least 1", file=sys.stderr)
        return 2
    describer = None if args.no_morphology else load_describer()
    try:
        rows = caption_records(
            args.data, seed=args.seed, limit=args.limit, describer=describer, modality=args.modality, progress=True
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    per_class = Counter(r["condition_id"] for r in rows)
    morphology = (
        "with morphology descriptors" if describer else "without morphology (dermchat.morphology missing or off)"
    )
    print(f"wrote {len(rows)} captions to {args.out} ({CAPTION_VERSION}, seed {args.seed}, {morphology})")
    print("per class: " + ", ".join(f"{k} {v}" for k, v in sorted(per_class.items())))
    print(f"e.g. {rows[0]['caption']}")
    return 0
