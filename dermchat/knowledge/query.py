"""Understanding a user's question before retrieval: spelling, condition names, and what they want to know.

Why: people write "ringworm", "melanomia" or "psoraisis", and ask "is it catching?" rather than naming a
section. Misspelt words are corrected against the knowledge base's own vocabulary (a word the KB never uses
cannot help retrieval anyway; a real word the embedding model knows is not a misspelling and stays), names
and synonyms from the condition vocabulary and the KB front matter are mapped to condition ids, and a small
table of cue phrases says which section a question is about. None of it is tied to particular questions: it
is vocabulary the KB and the condition list already define.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dermchat.vocabulary import normalise_label

if TYPE_CHECKING:
    import numpy as np

SPELLING_CUTOFF = 0.8  # difflib ratio a KB word needs to replace an unknown word

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "being",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "for",
        "from",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "me",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "of",
        "on",
        "or",
        "our",
        "ours",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "too",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "am",
        "just",
        "about",
        "also",
        "any",
        "get",
        "got",
        "im",
        "ive",
        "dont",
        "does",
        "thing",
        "things",
    ]
)

# Phrases that say which section a question is about (lower-case, matched on word boundaries).
SECTION_CUES: dict[str, tuple[str, ...]] = {
    "what_it_is": (
        "what is",
        "what are",
        "what's",
        "whats",
        "what causes",
        "cause",
        "caused",
        "causes",
        "contagious",
        "catching",
        "infectious",
        "spread",
        "spreads",
        "cancer",
        "cancerous",
        "dangerous",
        "serious",
        "harmless",
        "go away",
        "explain",
        "meaning",
        "mean",
        "overview",
        "definition",
        "pathophysiology",
    ),
    "how_it_looks": (
        "look like",
        "looks like",
        "look",
        "looks",
        "appearance",
        "appear",
        "colour",
        "color",
        "shape",
        "border",
        "recognise",
        "recognize",
        "identify",
        "tell if",
        "morphology",
        "distribution",
        "features",
        "presentation",
        "present",
        "clinical features",
    ),
    "who_gets_it": (
        "who gets",
        "who",
        "at risk",
        "risk",
        "risks",
        "age",
        "children",
        "kids",
        "baby",
        "babies",
        "older",
        "elderly",
        "common",
        "family",
        "genetic",
        "inherit",
        "inherited",
        "runs in",
        "epidemiology",
        "prevalence",
        "incidence",
        "risk factors",
    ),
    "on_darker_skin": (
        "darker skin",
        "dark skin",
        "black skin",
        "brown skin",
        "skin of colour",
        "skin of color",
        "darker",
        "pigmented skin",
        "fitzpatrick",
        "skin type",
        "skin types",
        "black people",
        "african",
        "asian",
        "skin tone",
        "skin tones",
    ),
    "red_flags": (
        "watch for",
        "watch out",
        "worry",
        "worried",
        "worrying",
        "warning",
        "warning signs",
        "danger",
        "red flag",
        "red flags",
        "emergency",
        "urgent",
        "urgently",
        "worse",
        "getting worse",
        "alarm",
        "concerning",
        "signs of",
        "serious signs",
        "eye",
        "eyes",
        "fever",
        "pregnant",
        "pregnancy",
    ),
    "self_care": (
        "treat",
        "treated",
        "treatment",
        "treatments",
        "at home",
        "home",
        "cream",
        "creams",
        "ointment",
        "self care",
        "self-care",
        "remedy",
        "remedies",
        "cure",
        "get rid",
        "manage",
        "prevent",
        "prevention",
        "avoid",
        "what can i do",
        "help",
        "moisturiser",
        "moisturizer",
        "over the counter",
        "pharmacy",
        "soothe",
        "stop",
        "wash",
        "shampoo",
        "soap",
        "shave",
        "shaving",
    ),
    "when_to_see_a_clinician": (
        "see a doctor",
        "see a gp",
        "see someone",
        "doctor",
        "gp",
        "dermatologist",
        "appointment",
        "when should",
        "should i see",
        "go to",
        "clinic",
        "hospital",
        "a&e",
        "emergency room",
        "need to see",
        "checked",
        "check",
        "how soon",
        "how urgently",
    ),
    "clinician_notes": (
        "differential",
        "differentials",
        "work-up",
        "workup",
        "work up",
        "biopsy",
        "management",
        "first-line",
        "first line",
        "second-line",
        "dermoscopy",
        "dermoscopic",
        "histology",
        "histopathology",
        "refer",
        "referral",
        "prescribe",
        "prescription",
        "dose",
        "dosing",
        "investigations",
        "ddx",
        "mohs",
        "excision",
        "topical",
        "systemic",
        "therapy",
        "guideline",
        "guidelines",
        "staging",
        "removal",
        "serology",
        "tests",
        "investigation",
        "options",
    ),
}

# Cues that open almost any question ("what's the weather?"): they pick a section, but say nothing about skin.
QUESTION_OPENERS: tuple[str, ...] = ("what is", "what are", "what's", "whats")
_OPENER = re.compile(r"(?<![a-z])(?:" + "|".join(map(re.escape, QUESTION_OPENERS)) + r")(?![a-z])")

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


class _LetterCounts:
    """Letter counts of a word list, for difflib's ``quick_ratio`` bound over all of them in one numpy step."""

    def __init__(self, words: list[str]) -> None:
        import numpy as np

        self.words = words
        alphabet = sorted({ch for w in words for ch in w})
        self._column = {ch: i for i, ch in enumerate(alphabet)}
        self._counts = np.zeros((len(words), len(alphabet)), dtype=np.int16)
        for row, w in enumerate(words):
            for ch in w:
                self._counts[row, self._column[ch]] += 1
        self._lengths = np.array([len(w) for w in words], dtype=np.int64)

    def _vector(self, word: str) -> np.ndarray:
        import numpy as np

        vec = np.zeros(self._counts.shape[1], dtype=np.int16)
        for ch in word:
            column = self._column.get(ch)
            if column is not None:  # a letter no KB word has matches nothing
                vec[column] += 1
        return vec

    def candidates(self, word: str, cutoff: float) -> list[str]:
        """Words, in list order, within two letters of ``word``'s length whose quick_ratio reaches ``cutoff``.

        quick_ratio = 2 * shared letters / total length is an upper bound of the real ratio, computed with
        difflib's own formula so the comparison with ``cutoff`` is the same float comparison.
        """
        import numpy as np

        near = np.abs(self._lengths - len(word)) <= 2
        shared = np.minimum(self._counts[near], self._vector(word)).sum(axis=1)
        bound = 2.0 * shared / (self._lengths[near] + len(word))
        pool = np.flatnonzero(near)[bound >= cutoff]
        return [self.words[i] for i in pool]


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
    # a cue phrase beyond a bare opener matched ("worry", "contagious", "treat"): the question is about skin
    cued: bool = False


class QueryAnalyzer:
    """Spelling correction, condition-name detection and section intent for one index's vocabulary."""

    def __init__(self, words: Iterable[str], labels: dict[str, str], common_words: Iterable[str] = ()) -> None:
        self.labels = labels
        self.words = sorted(set(words) | {w for label in labels for w in label.split()})
        self._known = set(self.words)
        # Real words are never "corrected": "turned" is not a misspelling of the KB's "burned".
        self._common = frozenset(common_words)
        self._letters = _LetterCounts(self.words)
        self._corrections: dict[str, str | None] = {}
        # Longest labels first so "basal cell carcinoma" wins over "carcinoma".
        self._label_list = sorted(labels, key=len, reverse=True)
        # Labels by their first word: a question can only contain labels whose first word it contains.
        self._label_rank = {label: n for n, label in enumerate(self._label_list)}
        self._labels_by_first: dict[str, list[str]] = {}
        for label in self._label_list:
            if len(label) >= 2:
                self._labels_by_first.setdefault(label.split(" ")[0], []).append(label)
        self._cue_patterns = {
            section: [re.compile(r"(?<![a-z])" + re.escape(cue) + r"(?![a-z])") for cue in cues]
            for section, cues in SECTION_CUES.items()
        }

    def correct(self, text: str) -> tuple[str, dict[str, str]]:
        """Replace words the KB never uses by the closest KB word (difflib ratio >= 0.8, words of 5+ letters).

        Words in ``common_words`` (real words the embedding model knows) are left as they are even when the KB
        does not use them: rewriting them changes the question, and the embedder reads the original.
        """
        corrections: dict[str, str] = {}

        def fix(match: re.Match[str]) -> str:
            word = match.group(0)
            low = word.lower()
            if not low.isascii():  # "gefährlich", "éruption": another language, not a misspelling of the KB's
                return word
            if len(low) < 5 or low in STOPWORDS or low in self._common:
                return word
            if low in self._known or stem(low) in self._known:
                return word
            best = self._closest(low)
            if best is None:
                return word
            corrections[low] = best
            return best

        return re.sub(r"[^\W\d_]+", fix, text), corrections  # whole words, accented letters included

    def forget_corrections(self) -> None:
        """Empty the per-word spelling memo, so the next question pays for its words as if never seen."""
        self._corrections.clear()

    def _closest(self, word: str) -> str | None:
        """The closest KB word (difflib ratio >= 0.8), exactly as ``difflib.get_close_matches(word, words, 1)``.

        Why not call that directly: it runs a ``SequenceMatcher`` over ~2,800 KB words, several ms for every
        word a question uses that the KB does not. Its own cheap bound (``quick_ratio``: shared letters,
        counted with repeats) is computed here for all words at once with numpy, and only the few words that
        pass it get the real ratio. Only words within two letters of its length can reach 0.8 at all.
        """
        if word not in self._corrections:
            if len(self._corrections) > 20_000:  # user text is unbounded; the memo must not be
                self._corrections.clear()
            matcher = difflib.SequenceMatcher()
            matcher.set_seq2(word)
            scored = []
            for candidate in self._letters.candidates(word, SPELLING_CUTOFF):
                matcher.set_seq1(candidate)
                ratio = matcher.ratio()
                if ratio >= SPELLING_CUTOFF:
                    scored.append((ratio, candidate))
            best = max(scored)[1] if scored else None  # get_close_matches' order: ratio, then the word
            self._corrections[word] = best if best != word else None
        return self._corrections[word]

    def mentioned_conditions(self, text: str) -> list[str]:
        """Condition ids whose name or synonym appears in ``text`` (whole words; order of appearance)."""
        norm = f" {normalise_label(text)} "
        found: dict[str, int] = {}
        taken: list[tuple[int, int]] = []
        for label in self._candidate_labels(norm):
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
        return sorted(found, key=found.__getitem__)

    def _candidate_labels(self, norm: str) -> list[str]:
        """Labels that could occur in ``norm``, longest first: their first word (or, for a one-word label
        matched in the plural, its singular) is one of the text's words."""
        words = set(norm.split())
        words |= {w[:-1] for w in words if w.endswith("s")} | {w[:-2] for w in words if w.endswith("es")}
        labels = {label for w in words for label in self._labels_by_first.get(w, ())}
        return sorted(labels, key=self._label_rank.__getitem__)

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
        cued = bool(sections) and bool(self.section_intent(_OPENER.sub(" ", corrected.lower().replace("’", "'"))))
        return QueryAnalysis(
            text=text,
            corrected=corrected,
            mentioned=self.mentioned_conditions(corrected),
            sections=sections,
            corrections=corrections,
            cued=cued,
        )
