"""Per-arm means with t-based 95% confidence intervals, one line per arm × question.

The unit of analysis is the participant: case-level answers are first averaged per participant (within that
arm), so a participant who saw six cases does not count six times. Scored questions (``scored: true``) are
stored as 1/0 correctness, so their mean is the accuracy. This is a first look for the researcher page and
the terminal, not a replacement for a mixed model.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dermchat.study.store import get_store


@dataclass(frozen=True)
class ArmSummary:
    study_id: str
    arm: str
    scope: str  # "case" or the questionnaire id
    question_id: str
    n: int  # participants
    mean: float
    sd: float | None
    ci_low: float | None
    ci_high: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float | None, float | None, float | None]:
    """(mean, sd, low, high); no interval from a single value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, None, None
    from scipy import stats  # imported here: only summaries need it

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean, sd, mean - half, mean + half


def summarise(db_url: str | Path, study_id: str | None = None) -> list[ArmSummary]:
    store = get_store(db_url)
    per_participant: dict[tuple[str, str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for answer in store.answers(study_id):
        if answer["value_numeric"] is None:
            continue
        scope = "case" if answer["case_id"] else str(answer["questionnaire_id"])
        key = (answer["study_id"], answer["arm"] or "all", scope, answer["question_id"])
        per_participant[key][answer["participant_code"]].append(float(answer["value_numeric"]))
    out: list[ArmSummary] = []
    for (sid, arm, scope, question), by_person in sorted(per_participant.items()):
        values = [sum(v) / len(v) for v in by_person.values()]
        mean, sd, low, high = t_interval(values)
        out.append(ArmSummary(sid, arm, scope, question, len(values), mean, sd, low, high))
    return out


def format_table(rows: list[ArmSummary]) -> str:
    if not rows:
        return "no numeric answers yet"

    def num(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    header = f"{'study':<24} {'scope':<16} {'question':<16} {'arm':<20} {'n':>4} {'mean':>6}  95% CI"
    lines = [header, "-" * len(header)]
    for r in rows:
        ci = f"[{num(r.ci_low)}, {num(r.ci_high)}]" if r.ci_low is not None else "(n<2)"
        lines.append(f"{r.study_id:<24} {r.scope:<16} {r.question_id:<16} {r.arm:<20} {r.n:>4} {r.mean:>6.2f}  {ci}")
    return "\n".join(lines)


def arm_order_balance(participant_rows: list[dict[str, Any]]) -> str:
    """'finished / started' per arm order, one line: assignment is balanced at enrolment, but participants who
    abandon or withdraw unbalance the arms, and the researcher should see that while recruiting, not at analysis."""
    started: dict[str, int] = defaultdict(int)
    finished: dict[str, int] = defaultdict(int)
    for row in participant_rows:
        order = " → ".join(str(row["arm_order"]).split("|"))
        started[order] += 1
        finished[order] += row["status"] == "done"
    return " · ".join(f"`{order}` {finished[order]} / {started[order]}" for order in sorted(started))
