"""Understanding a user's question before retrieval: spelling, condition names, and what they want to know.

Why: people write "ringworm", "melanomia" or "psoraisis", and ask "is it catching?" rather than naming a
section. Misspelt words are corrected against the knowledge base's own vocabulary (a word the KB never uses
cannot help retrieval anyway), names and synonyms from the condition vocabulary and the KB front matter are
mapped to condition ids, and a small table of cue phrases says which section a question is about. None of
it is tied to particular questions: it is vocabulary the KB and the condition list already define.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Iterable

from dermchat.vocabulary import normalise_label

STOPWORDS = frozenset(
    """a an and are as at be been being but by can could did do does doing for from had has have having he her
    hers him his how i if in into is it its itself me my myself no nor not of on or our ours she should so some
    such than that the their theirs them then there these they this those to too very was we were what when where
    which while who whom why will with would you your yours am just about also any get got im ive dont does
    thing things""".split()
)

# Phrases that say which section a question is about (lower-case, matched on word boundaries).
SECTION_CUES: dict[str, tuple[str, ...]] = {
    "what_it_is": (
        "what is", "what are", "what's", "whats", "what causes", "cause", "caused", "causes", "contagious",
        "catching", "infectious", "spread", "spreads", "cancer", "cancerous", "dangerous", "serious", "harmless",
        "go away", "explain", "meaning", "mean", "overview", "definition", "pathophysiology",
    ),
    "how_it_looks": (
        "look like", "looks like", "look", "looks", "appearance", "appear", "colour", "color", "shape", "border",
        "recognise", "recognize", "identify", "tell if", "morphology", "distribution", "features", "presentation",
        "present", "clinical features",
    ),
    "who_gets_it": (
        "who gets", "who", "at risk", "risk", "risks", "age", "children", "kids", "baby", "babies", "older",
        "elderly", "common", "family", "genetic", "inherit", "inherited", "runs in", "epidemiology", "prevalence",
        "incidence", "risk factors",
    ),
    "on_darker_skin": (
        "darker skin", "dark skin", "black skin", "brown skin", "skin of colour", "skin of color", "darker",
        "pigmented skin", "fitzpatrick", "skin type", "skin types", "black people", "african", "asian",
        "skin tone", "skin tones",
    ),
    "red_flags": (
        "watch for", "watch out", "worry", "worried", "worrying", "warning", "warning signs", "danger",
        "red flag", "red flags", "emergency", "urgent", "urgently", "worse", "getting worse", "alarm",
        "concerning", "signs of", "serious signs", "eye", "eyes", "fever", "pregnant", "pregnancy",
    ),
    "self_care": (
        "treat", "treated", "treatment", "treatments", "at home", "home", "cream", "creams", "ointment",
        "self care", "self-care", "remedy", "remedies", "cure", "get rid", "manage", "prevent", "prevention",
        "avoid", "what can i do", "help", "moisturiser", "moisturizer", "over the counter", "pharmacy", "soothe",
        "stop", "wash", "shampoo", "soap", "shave", "shaving",
    ),
    "when_to_see_a_clinician": (
        "see a doctor", "see a gp", "see someone", "doctor", "gp", "dermatologist", "appointment", "when should",
        "should i see", "go to", "clinic", "hospital", "a&e", "emergency room", "need to see", "checked",
        "check", "how soon", "how urgently",
    ),
    "clinician_notes": (
        "differential", "differentials", "work-up", "workup", "work up", "biopsy", "management", "first-line",
        "first line", "second-line", "dermoscopy", "dermoscopic", "histology", "histopathology", "refer",
        "referral", "prescribe", "prescription", "dose", "dosing", "investigations", "ddx", "mohs", "excision",
        "topical", "systemic", "therapy", "guideline", "guidelines", "staging", "removal", "serology", "tests",
        "investigation", "options",
    ),
}

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens with a light plural strip, stopwords removed (BM25 and spelling share it)."""
    out = []
    for tok in _TOKEN.findall(text.lower().replace("’", "'")):
        tok = tok.split("'")[0]
        if tok in STOPWORDS or not tok:
            continue
        out.append(stem(tok))
    return out


def stem(token: str) -> str:
    """A very light stemmer: enough that 'moles'/'mole' and 'itching'/'itch' meet, never surprising."""
    if len(token) > 5 and token.endswith("ing"):
        return token[:-3]
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


@dataclass
class QueryAnalysis:
    """What the question says, in the index's terms."""

    text: str
    corrected: str
    mentioned: list[str] = field(default_factory=list)
    sections: dict[str, float] = field(default_factory=dict)
    corrections: dict[str, str] = field(default_factory=dict)


class QueryAnalyzer:
    """Spelling correction, condition-name detection and section intent for one index's vocabulary."""

    def __init__(self, words: Iterable[str], labels: dict[str, str]) -> None:
        self.labels = labels
        self.words = sorted(set(words) | {w for label in labels for w in label.split()})
        self._known = set(self.words)
        self._by_length: dict[int, list[str]] = {}
        for word in self.words:
            self._by_length.setdefault(len(word), []).append(word)
        self._corrections: dict[str, str | None] = {}
        # Longest labels first so "basal cell carcinoma" wins over "carcinoma".
        self._label_list = sorted(labels, key=len, reverse=True)
        self._cue_patterns = {
            section: [re.compile(r"(?<![a-z])" + re.escape(cue) + r"(?![a-z])") for cue in cues]
            for section, cues in SECTION_CUES.items()
        }

    def correct(self, text: str) -> tuple[str, dict[str, str]]:
        """Replace words the KB never uses by the closest KB word (difflib ratio >= 0.8, words of 5+ letters)."""
        corrections: dict[str, str] = {}

        def fix(match: re.Match[str]) -> str:
            word = match.group(0)
            low = word.lower()
            if len(low) < 5 or low in self._known or stem(low) in self._known or low in STOPWORDS:
                return word
            best = self._closest(low)
            if best is not None:
                corrections[low] = best
                return best
            return word

        return re.sub(r"[A-Za-z]+", fix, text), corrections

    def _closest(self, word: str) -> str | None:
        """The closest KB word (ratio >= 0.8); only words within two letters of its length can reach that."""
        if word not in self._corrections:
            if len(self._corrections) > 20_000:  # user text is unbounded; the memo must not be
                self._corrections.clear()
            pool = [w for n in range(len(word) - 2, len(word) + 3) for w in self._by_length.get(n, ())]
            close = difflib.get_close_matches(word, pool, n=1, cutoff=0.8)
            self._corrections[word] = close[0] if close and close[0] != word else None
        return self._corrections[word]

    def mentioned_conditions(self, text: str) -> list[str]:
        """Condition ids whose name or synonym appears in ``text`` (whole words; order of appearance)."""
        norm = f" {normalise_label(text)} "
        found: dict[str, int] = {}
        taken: list[tuple[int, int]] = []
        for label in self._label_list:
            if len(label) < 2:
                continue
            for variant in (label, label + "s", label + "es"):
                pos = norm.find(f" {variant} ")
                if pos < 0:
                    continue
                span = (pos, pos + len(variant))
                if any(a <= span[0] < b or a < span[1] <= b for a, b in taken):
                    continue  # part of a longer name already matched
                taken.append(span)
                cid = self.labels[label]
                found[cid] = min(found.get(cid, pos), pos)
                break
        return sorted(found, key=found.get)  # type: ignore[arg-type]

    def section_intent(self, text: str) -> dict[str, float]:
        """Weights per section from cue phrases (longer cues count more); empty when nothing matches."""
        low = text.lower().replace("’", "'")
        scores: dict[str, float] = {}
        for section, patterns in self._cue_patterns.items():
            score = 0.0
            for pattern in patterns:
                if pattern.search(low):
                    score = max(score, 1.0 + 0.25 * pattern.pattern.count(" "))
            if score:
                scores[section] = score
        if not scores:
            return {}
        top = max(scores.values())
        return {s: v / top for s, v in scores.items()}

    def analyze(self, text: str, audience: str | None = None) -> QueryAnalysis:
        corrected, corrections = self.correct(text)
        sections = self.section_intent(corrected)
        if audience == "clinician" and "self_care" in sections:
            # a clinician asking about treatment wants management notes, not home care
            sections["clinician_notes"] = max(sections.get("clinician_notes", 0.0), sections["self_care"])
        return QueryAnalysis(
            text=text,
            corrected=corrected,
            mentioned=self.mentioned_conditions(corrected),
            sections=sections,
            corrections=corrections,
        )
