"""A learned second screen: word and letter n-grams weighed by a linear model trained on the labelled phrasings.

Why: the rules are exact about what they know and blind to what they don't. Sets of messages written by people
who never saw the rules showed it: the rules found 1.00 of the red flags in what had been read and tuned on, and
0.76-0.85 of those in sets nobody had read. A linear model over character n-grams ("bleedin", "swolen", "bubbles")
and word pairs ("wont quit", "his milk") generalises from the same examples to wordings no rule names.

It only ever adds, and only where the rules found nothing: whenever a rule fires, the rules alone say how urgent it
is (the model once read "it has started bleeding since yesterday" as "get help now", because so many of its "now"
examples say "since yesterday"). A hit names the warning sign whose examples it is closest to, so the notice and the knowledge-base entry
are the ones that sign's rule would have given. Everything here is numpy and scipy; the weights are a project
artifact (``dermchat/data/redflag_learned.npz``, trained by ``python -m dermchat train-redflag-screen``; model card
``redflag_learned.md``).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dermchat.redflags.rules import Urgency
from dermchat.redflags.spelling import normalise
from dermchat.results import RedFlagHit

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

MODEL_FILE = "redflag_learned.npz"
CLASSES = ("none", "soon", "now")
CHAR_NGRAMS = (3, 5)
MIN_DOCUMENTS = 2  # an n-gram seen in one message only is that message's, not the language's
LEARNED_PREFIX = "learned:"

_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def ngrams(text: str) -> list[str]:
    """The message's features: its words and word pairs, and the 3-5 letter pieces of each word (padded with spaces
    so a piece can tell a word's start and end), after the rules' own spelling fixes."""
    words = _WORD_RE.findall(normalise(text).lower())
    grams = [f"w:{w}" for w in words] + [f"w:{a} {b}" for a, b in itertools.pairwise(words)]
    for word in words:
        padded = f" {word} "
        for n in range(CHAR_NGRAMS[0], CHAR_NGRAMS[1] + 1):
            grams.extend(f"c:{padded[i : i + n]}" for i in range(max(1, len(padded) - n + 1)))
    return grams


@dataclass(frozen=True)
class TfIdf:
    """The vocabulary and its inverse document frequencies: a message becomes a unit-length row of weights."""

    index: dict[str, int]
    idf: np.ndarray

    @classmethod
    def fit(cls, texts: list[str]) -> TfIdf:
        counts: dict[str, int] = {}
        for text in texts:
            for gram in set(ngrams(text)):
                counts[gram] = counts.get(gram, 0) + 1
        kept = sorted(g for g, c in counts.items() if c >= MIN_DOCUMENTS)
        df = np.array([counts[g] for g in kept], dtype=float)
        idf = np.log((1 + len(texts)) / (1 + df)) + 1  # smoothed, so no weight is zero
        return cls({g: i for i, g in enumerate(kept)}, idf)

    def transform(self, texts: list[str]) -> csr_matrix:
        from scipy.sparse import csr_matrix

        rows, cols, values = [], [], []
        for row, text in enumerate(texts):
            tf: dict[int, int] = {}
            for gram in ngrams(text):
                col = self.index.get(gram)
                if col is not None:
                    tf[col] = tf.get(col, 0) + 1
            if not tf:
                continue
            cs = np.fromiter(tf, dtype=int)
            weights = (1 + np.log(np.fromiter(tf.values(), dtype=float))) * self.idf[cs]  # sublinear tf
            rows.extend([row] * len(cs))
            cols.extend(cs.tolist())
            values.extend((weights / np.linalg.norm(weights)).tolist())
        return csr_matrix((values, (rows, cols)), shape=(len(texts), len(self.idf)))


def class_probabilities(rows: csr_matrix, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """P(none), P(soon), P(now) for each TF-IDF row."""
    from scipy.special import softmax

    return np.asarray(softmax(rows @ coef + intercept, axis=1))


@dataclass(frozen=True)
class LearnedScreen:
    """The fitted model: n-gram weights for none / soon / now, the two probability cut-offs, and one centroid per
    warning sign (the mean of its examples' rows) to name the sign a hit is closest to."""

    tfidf: TfIdf
    coef: np.ndarray  # (features, 3)
    intercept: np.ndarray  # (3,)
    flag_threshold: float  # P(soon) + P(now) above this is a red flag
    now_threshold: float  # P(now) above this makes it "get help now"
    sign_ids: tuple[str, ...]
    sign_centroids: np.ndarray  # (signs, features)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        return class_probabilities(self.tfidf.transform(texts), self.coef, self.intercept)

    def hit(self, text: str) -> RedFlagHit | None:
        """A red flag the model sees in ``text``, named after the closest sign, or None."""
        from dermchat.redflags.rules import RULES

        row = self.tfidf.transform([text])
        p = class_probabilities(row, self.coef, self.intercept)[0]
        if p[1] + p[2] <= self.flag_threshold or row.nnz == 0:
            return None
        urgency: Urgency = "now" if p[2] > self.now_threshold else "soon"
        by_id = {rule.id: rule for rule in RULES}
        order = np.argsort(-np.asarray(row @ self.sign_centroids.T).ravel())
        rule = next((by_id[self.sign_ids[i]] for i in order if by_id[self.sign_ids[i]].urgency == urgency), None)
        rule = rule or by_id[self.sign_ids[int(order[0])]]
        return RedFlagHit(
            id=LEARNED_PREFIX + rule.id,
            urgency=urgency,
            what=rule.what,
            source=rule.source,
            matched=f"learned screen, P(red flag) {p[1] + p[2]:.2f}",
        )

    def save(self, path: Path) -> None:
        grams = sorted(self.tfidf.index, key=self.tfidf.index.__getitem__)
        np.savez_compressed(
            path,
            grams=np.array(grams),
            idf=self.tfidf.idf.astype(np.float32),
            coef=self.coef.astype(np.float32),
            intercept=self.intercept.astype(np.float32),
            thresholds=np.array([self.flag_threshold, self.now_threshold], dtype=np.float32),
            sign_ids=np.array(self.sign_ids),
            sign_centroids=self.sign_centroids.astype(np.float16),
        )

    @classmethod
    def load(cls, path: Path) -> LearnedScreen:
        with np.load(path, allow_pickle=False) as saved:
            grams = [str(g) for g in saved["grams"]]
            flag, now = (float(t) for t in saved["thresholds"])
            return cls(
                tfidf=TfIdf({g: i for i, g in enumerate(grams)}, saved["idf"].astype(float)),
                coef=saved["coef"].astype(float),
                intercept=saved["intercept"].astype(float),
                flag_threshold=flag,
                now_threshold=now,
                sign_ids=tuple(str(s) for s in saved["sign_ids"]),
                sign_centroids=saved["sign_centroids"].astype(float),
            )


log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_IN_USE: list[LearnedScreen] = []  # a model being scored before it is saved (``use_model``)


@functools.cache
def _loaded(path: Path) -> LearnedScreen | None:
    return LearnedScreen.load(path) if path.exists() else None


def learned_screen(path: Path | None = None) -> LearnedScreen | None:
    """The packaged model, loaded once (thread-safe); None when the file is missing (the rules still screen)."""
    from dermchat.paths import DATA_PACKAGE_DIR

    with _LOCK:
        if _IN_USE and path is None:
            return _IN_USE[-1]
        return _loaded(path or DATA_PACKAGE_DIR / MODEL_FILE)


@contextlib.contextmanager
def use_model(model: LearnedScreen) -> Iterator[None]:
    """Screen with ``model`` instead of the packaged one inside the block (training scores a model before saving)."""
    with _LOCK:
        _IN_USE.append(model)
    try:
        yield
    finally:
        with _LOCK:
            _IN_USE.remove(model)


def learned_hits(text: str, rule_hits: list[RedFlagHit]) -> list[RedFlagHit]:
    """What the model adds to the rules' hits: a flag where they found none (nothing where they found one). A broken
    weights file is logged and skipped: the rules still screen."""
    if rule_hits or not (text or "").strip():
        return []
    try:
        model = learned_screen()
        hit = model.hit(text) if model is not None else None
    except (OSError, ValueError, KeyError) as exc:
        log.warning("learned red-flag screen unavailable: %s", exc)
        return []
    return [hit] if hit is not None else []
