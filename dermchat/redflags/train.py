"""``python -m dermchat train-redflag-screen``: fit the learned red-flag screen on the labelled phrasings.

Why the choices are made the way they are: the penalty and the two cut-offs are chosen by five-fold cross-validation
on the dev phrasings alone (the rules were tuned on the same messages, so only the model's own out-of-fold figures
say anything). The blind set is scored once, after everything is chosen, for the model card; it never chooses.
The fit is deterministic (L-BFGS from zero weights, a fixed fold assignment), so the same phrasings give the same
weights.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from dermchat.cli_output import emit, fail
from dermchat.redflags.learned import CLASSES, MODEL_FILE, LearnedScreen, TfIdf, class_probabilities, use_model

L2_GRID = (0.03, 0.1, 0.3, 1.0)
FOLDS = 5
MAX_FALSE_ALARMS = 0.03  # out of fold, the model alone: at most 3 in 100 ordinary messages flagged
MAX_FALSE_NOW = 0.03  # out of fold: at most 3 in 100 messages that are not "now" told to get help now
CARD_FILE = "redflag_learned.md"
WRITTEN_WITH_RULES = 138  # the dev file's first lines; the rest were written by people who had not seen the rules


def _labels(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array([0 if not r["red_flag"] else 2 if r.get("urgency") == "now" else 1 for r in rows])


def sign_of(row: dict[str, Any]) -> str | None:
    """The rule id of a red-flag phrasing's sign: its "sign" label when the writer gave one, else the rules' hit."""
    from dermchat.redflags.rules import RULES
    from dermchat.redflags.screen import screen

    if not row["red_flag"]:
        return None
    label = (row.get("sign") or "").lower()
    for rule in RULES:
        if label and (label.startswith(rule.what.lower()) or rule.what.lower().startswith(label)):
            return rule.id
    hits = screen(row["text"], learned=False)
    wanted = [h for h in hits if h.urgency == (row.get("urgency") or h.urgency)]
    return (wanted or hits)[0].id if hits else None


def _fit(tfidf: TfIdf, texts: list[str], labels: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    from dermchat.classifier.softmax_regression import fit_softmax_regression

    fit = fit_softmax_regression(tfidf.transform(texts), labels, len(CLASSES), l2, penalty_rows=len(texts))
    return fit.coef, fit.intercept


def out_of_fold(texts: list[str], labels: np.ndarray, l2: float) -> np.ndarray:
    """Each message's probabilities from a model fitted (vocabulary included) on the other four folds."""
    folds = np.random.default_rng(0).permutation(len(texts)) % FOLDS
    probs = np.zeros((len(texts), len(CLASSES)))
    for fold in range(FOLDS):
        train = [i for i in range(len(texts)) if folds[i] != fold]
        test = [i for i in range(len(texts)) if folds[i] == fold]
        tfidf = TfIdf.fit([texts[i] for i in train])
        coef, intercept = _fit(tfidf, [texts[i] for i in train], labels[train], l2)
        probs[test] = class_probabilities(tfidf.transform([texts[i] for i in test]), coef, intercept)
    return probs


def cut_offs(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The lowest flag cut-off whose false-alarm rate stays within MAX_FALSE_ALARMS (most red flags found), and the
    lowest "now" cut-off that tells at most MAX_FALSE_NOW of the other messages to get help now."""
    flag_p, now_p = probs[:, 1] + probs[:, 2], probs[:, 2]
    plain, not_now = labels == 0, labels != 2
    flag = min((t for t in np.arange(0.5, 1.0, 0.01) if (flag_p[plain] > t).mean() <= MAX_FALSE_ALARMS), default=0.99)
    now = min((t for t in np.arange(0.3, 1.0, 0.01) if (now_p[not_now] > t).mean() <= MAX_FALSE_NOW), default=0.99)
    return {"flag": round(float(flag), 2), "now": round(float(now), 2)}


def figures(probs: np.ndarray, labels: np.ndarray, flag: float, now: float) -> dict[str, float]:
    flagged = probs[:, 1] + probs[:, 2] > flag
    said_now = flagged & (probs[:, 2] > now)
    red = labels > 0
    return {
        "sensitivity": round(float(flagged[red].mean()), 3),
        "false_alarm_rate": round(float(flagged[~red].mean()), 3),
        "now_found": round(float(said_now[labels == 2].mean()), 3),
        "now_said_of_others": round(float(said_now[labels != 2].mean()), 3),
    }


def train(rows: list[dict[str, Any]], l2_grid: tuple[float, ...] = L2_GRID) -> tuple[LearnedScreen, dict[str, Any]]:
    """The model for ``rows`` and the report: out-of-fold figures for every penalty, the chosen one, its cut-offs."""
    texts = [r["text"] for r in rows]
    labels = _labels(rows)
    grid = []
    for l2 in l2_grid:
        probs = out_of_fold(texts, labels, l2)
        chosen = cut_offs(probs, labels)
        grid.append({"l2": l2, **chosen, **figures(probs, labels, chosen["flag"], chosen["now"])})
    best = max(grid, key=lambda g: (g["sensitivity"] + g["now_found"], -g["l2"]))
    tfidf = TfIdf.fit(texts)
    coef, intercept = _fit(tfidf, texts, labels, best["l2"])
    model = LearnedScreen(tfidf, coef, intercept, best["flag"], best["now"], *_sign_centroids(tfidf, rows))
    return model, {"phrasings": len(rows), "grid": grid, "chosen": best, "features": len(tfidf.idf)}


def _sign_centroids(tfidf: TfIdf, rows: list[dict[str, Any]]) -> tuple[tuple[str, ...], np.ndarray]:
    signs = [sign_of(r) for r in rows]
    ids = tuple(sorted({s for s in signs if s}))
    matrix = tfidf.transform([r["text"] for r in rows])
    centroids = np.vstack(
        [np.asarray(matrix[[i for i, s in enumerate(signs) if s == sid]].mean(axis=0)) for sid in ids]
    )
    return ids, centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)


def main(argv: list[str] | None = None) -> int:
    from dermchat.paths import DATA_PACKAGE_DIR
    from dermchat.redflags.evaluate import PHRASING_SETS, evaluate, figures_only, load_phrasings

    parser = argparse.ArgumentParser(
        prog="python -m dermchat train-redflag-screen", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--phrasings", default=str(PHRASING_SETS["dev"]), help="labelled JSON lines to learn from")
    parser.add_argument("--out", default=str(DATA_PACKAGE_DIR), help="folder for the weights and the model card")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        rows = load_phrasings(Path(args.phrasings), keep_sign=True)
    except (OSError, ValueError) as exc:
        return fail(exc)
    if len({r["red_flag"] for r in rows}) < 2 or len(rows) < 2 * FOLDS:
        return fail(f"{args.phrasings}: needs at least {2 * FOLDS} phrasings, red flags and ordinary ones")
    model, report = train(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    scored = {}
    with use_model(model):
        for name in ("heldout", "heldout2", "blind", "blind2"):
            if PHRASING_SETS[name].exists():
                scored[name] = figures_only(evaluate(load_phrasings(PHRASING_SETS[name])))
    report["scored_after_choosing"] = scored
    (out / CARD_FILE).write_text(model_card(report), encoding="utf-8")
    return emit(report, args.json, lambda r: print(json.dumps(r["chosen"])), indent=2)


def model_card(report: dict[str, Any]) -> str:
    chosen = report["chosen"]
    grid = "\n".join(
        f"| {g['l2']} | {g['flag']} | {g['now']} | {g['sensitivity']} | {g['false_alarm_rate']} | {g['now_found']} | "
        f"{g['now_said_of_others']} |"
        for g in report["grid"]
    )
    scored = "\n".join(
        f"| {name} | {f['n']} | {f['sensitivity']} | {f['false_alarm_rate']} | {f['urgency_right']} |"
        for name, f in report["scored_after_choosing"].items()
    )
    return f"""# Model card: learned red-flag screen (`{MODEL_FILE}`)

**Not a diagnosis.** A second screen beside the rules (`dermchat/redflags/rules.py`) for warning signs in what a
user types. It is asked only when no rule fires, so it can add a "see a doctor soon" or "get medical help now"
notice, never remove one or change the urgency a rule gave.

- **What it is**: word, word-pair and 3-5 letter n-gram TF-IDF ({report["features"]} features, each seen in at least
  two messages) and a three-class (none / soon / now) L2 softmax regression, fitted by the project's own code
  (`dermchat/redflags/train.py`, numpy + scipy). A hit is named after the warning sign whose examples its n-grams are
  closest to (cosine to each sign's centroid), so the notice and knowledge-base entry are that sign's.
- **Data**: the {report["phrasings"]} dev phrasings in `dermchat/data/redflag_phrasings.jsonl`: the first
  {WRITTEN_WITH_RULES} written with the rules, the rest written from 2026-12-05 by helpers who had never seen the rules
  (lay words, slang, typos, non-native English, carers' and clinicians' notes, and ordinary messages that use the
  signs' words), labelled as a careful triage nurse would; none is a real patient's message.
- **Exact command**: `python -m dermchat train-redflag-screen` (deterministic; about ten seconds on two cores).
- **Chosen by five-fold cross-validation on the dev phrasings only**: the penalty maximising out-of-fold red flags
  found plus "now" found, each with the lowest cut-off whose out-of-fold false alarms stay within
  {MAX_FALSE_ALARMS} (flag) and {MAX_FALSE_NOW} ("now" said of a message that is not).
  Chosen: l2 {chosen["l2"]}, flag cut-off {chosen["flag"]}, "now" cut-off {chosen["now"]}.

| l2 | flag cut-off | now cut-off | out-of-fold sensitivity | false alarms | "now" found | "now" said of others |
|---|---|---|---|---|---|---|
{grid}

- **Scored once, after choosing (rules + this model, as the app runs them)**:

| set | messages | sensitivity | false alarms | right urgency |
|---|---|---|---|---|
{scored}

- **Limits**: every training message was written for this purpose, most by language-model helpers; real users
  will word things in ways none of them did, and a message in another language is not understood. The model is a
  bag of n-grams: it does not know who has the sign ("my aunt's mole bled once in 1990" can score high), which is
  why it only ever adds a notice, and only where no rule fired. It learnt some of its writers' habits too: "since
yesterday" pulls towards "now" (it read "it has started bleeding since yesterday" as "now"; the rules answer that
message, so it is never asked).
- **Licence**: the project's; the phrasings are the project's own writing.
"""
