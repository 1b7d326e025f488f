"""Which arm(s) and which case order a participant gets: a pure function of the study and enrolment number.

Deterministic on purpose: the assignment of participant *n* can be recomputed (and audited) from the study
file alone, and a restarted app hands out exactly what it would have handed out before.

- within-subject: every participant sees every arm, one block of cases per arm. ``latin_square`` orders the
  arms by a balanced (Williams) Latin square, so over each complete set of rows every arm is in every position
  equally often and follows every other arm equally often; case block *j* goes with the arm in position *j*,
  so every case block is also paired with every arm equally often. ``random`` draws a seeded permutation.
- between-subject: each participant sees one arm, assigned in seeded random blocks (every ``len(arms)``
  participants contain each arm once). Case order is a balanced Latin square over cases (``latin_square``) or a
  seeded shuffle (``random``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from dermchat.study.definition import Study


@dataclass(frozen=True)
class Step:
    """One screen of a participant's run: a case under an arm, or a questionnaire (``block`` = arm block)."""

    kind: str  # "case" | "questionnaire"
    ref: str  # case id or questionnaire id
    arm: str | None
    block: int

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "ref": self.ref, "arm": self.arm, "block": self.block}


@dataclass(frozen=True)
class Assignment:
    seq: int
    arm_order: list[str]
    steps: list[Step] = field(default_factory=list)

    @property
    def case_steps(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "case"]


def balanced_latin_square(n: int) -> list[list[int]]:
    """Williams design: ``n`` rows for even ``n``, ``2n`` (each row and its mirror) for odd ``n``."""
    if n < 1:
        raise ValueError("a Latin square needs at least one treatment")
    # the classic zig-zag 0, 1, n-1, 2, n-2, ... : start from 0 then alternate from the top and the bottom
    first = [0] + [((i + 1) // 2) if i % 2 == 1 else (n - i // 2) for i in range(1, n)]
    rows = [[(value + shift) % n for value in first] for shift in range(n)]
    if n % 2 == 1:
        rows += [list(reversed(row)) for row in rows]
    return rows


def _rng(study: Study, *parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in (study.seed, study.id, *parts)))


def _blocks(items: list[str], n: int) -> list[list[str]]:
    """Split in listed order into ``n`` contiguous blocks whose sizes differ by at most one."""
    size, extra = divmod(len(items), n)
    blocks, start = [], 0
    for index in range(n):
        end = start + size + (1 if index < extra else 0)
        blocks.append(items[start:end])
        start = end
    return blocks


def arm_order(study: Study, seq: int) -> list[str]:
    arms = [arm.id for arm in study.arms]
    if study.design == "between":
        block, position = divmod(seq, len(arms))
        shuffled = list(arms)
        _rng(study, "between-block", block).shuffle(shuffled)
        return [shuffled[position]]
    if study.counterbalancing == "latin_square":
        rows = balanced_latin_square(len(arms))
        return [arms[i] for i in rows[seq % len(rows)]]
    shuffled = list(arms)
    _rng(study, "arm-order", seq).shuffle(shuffled)
    return shuffled


def case_order(study: Study, seq: int) -> list[list[str]]:
    """Case ids per arm block (one block for between-subject)."""
    case_ids = [case.id for case in study.cases.items]
    if study.design == "within":
        blocks = _blocks(case_ids, len(study.arms))
        if study.counterbalancing == "random":
            rng = _rng(study, "case-order", seq)
            for block in blocks:
                rng.shuffle(block)
        return blocks
    if study.counterbalancing == "latin_square":
        rows = balanced_latin_square(len(case_ids))
        return [[case_ids[i] for i in rows[seq % len(rows)]]]
    shuffled = list(case_ids)
    _rng(study, "case-order", seq).shuffle(shuffled)
    return [shuffled]


def assign(study: Study, seq: int) -> Assignment:
    """The full run of participant number ``seq`` (0-based enrolment order)."""
    if seq < 0:
        raise ValueError("seq must be >= 0")
    arms = arm_order(study, seq)
    blocks = case_order(study, seq)
    steps: list[Step] = []
    after_arm = [q for q in study.questionnaires if q.when == "after_arm"]
    at_end = [q for q in study.questionnaires if q.when == "end"]
    for index, (arm, cases) in enumerate(zip(arms, blocks)):
        steps.extend(Step("case", case_id, arm, index) for case_id in cases)
        steps.extend(Step("questionnaire", q.id, arm, index) for q in after_arm)
    last_arm = arms[0] if len(arms) == 1 else None
    steps.extend(Step("questionnaire", q.id, last_arm, len(arms) - 1) for q in at_end)
    return Assignment(seq=seq, arm_order=arms, steps=steps)
