"""Counterbalancing over many participants: orders, arms and case-arm pairings are balanced and reproducible."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dermchat.study.assignment import assign, balanced_latin_square
from dermchat.study.definition import Arm, Study, load_study

REPO = Path(__file__).resolve().parent.parent


def study(name: str) -> Study:
    return load_study(REPO / "studies" / f"{name}.yaml", check_images=False)


def with_arms(base: Study, n: int, **update: object) -> Study:
    arms = [Arm(id=f"arm{i}", settings={"references_per_condition": i}) for i in range(n)]
    return base.model_copy(update={"arms": arms, **update})


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_balanced_latin_square_properties(n: int) -> None:
    rows = balanced_latin_square(n)
    assert len(rows) == (n if n % 2 == 0 else 2 * n)
    for row in rows:
        assert sorted(row) == list(range(n))
    for position in range(n):  # every treatment in every position equally often
        assert Counter(row[position] for row in rows) == Counter({t: len(rows) // n for t in range(n)})
    pairs = Counter((row[i], row[i + 1]) for row in rows for i in range(n - 1))  # carry-over balance
    assert len(pairs) == n * (n - 1) and len(set(pairs.values())) == 1


@pytest.mark.parametrize("n_arms", [2, 3, 4])
def test_within_latin_square_balances_order_and_case_arm_pairs(n_arms: int) -> None:
    base = study("reference_images_within")
    s = with_arms(base, n_arms)
    rows = len(balanced_latin_square(n_arms))
    participants = [assign(s, seq) for seq in range(rows * 7)]
    orders = Counter(tuple(p.arm_order) for p in participants)
    assert len(orders) == rows and set(orders.values()) == {7}
    for position in range(n_arms):
        assert set(Counter(p.arm_order[position] for p in participants).values()) == {7 * rows // n_arms}
    pairing = Counter((step.ref, step.arm) for p in participants for step in p.case_steps)
    per_case = Counter(case for case, _ in pairing.elements())
    for (case, arm), count in pairing.items():
        assert count == per_case[case] // n_arms, (case, arm)
    for p in participants:  # everyone sees every case exactly once, and every arm
        assert sorted(step.ref for step in p.case_steps) == sorted(c.id for c in s.cases.items)
        assert set(p.arm_order) == {a.id for a in s.arms}


def test_within_questionnaires_follow_each_arm_block() -> None:
    p = assign(study("reference_images_within"), 3)
    kinds = [(step.kind, step.ref) for step in p.steps]
    assert kinds.count(("questionnaire", "block")) == 2
    assert kinds[-1] == ("questionnaire", "final")
    block_questionnaires = [s for s in p.steps if s.ref == "block"]
    assert [s.arm for s in block_questionnaires] == p.arm_order


def test_between_assignment_is_blocked_and_balanced() -> None:
    s = study("citations_between")
    arms = [assign(s, seq).arm_order for seq in range(200)]
    assert all(len(a) == 1 for a in arms)
    for block in range(100):  # every block of two participants contains each arm once
        assert {arms[2 * block][0], arms[2 * block + 1][0]} == {"with_citations", "without_citations"}
    assert len({tuple(a) for a in arms[::2]}) == 2  # the order within blocks is random, not alternating


def test_between_random_case_orders_are_seeded_and_vary() -> None:
    s = study("citations_between")
    first = [tuple(step.ref for step in assign(s, seq).case_steps) for seq in range(48)]
    again = [tuple(step.ref for step in assign(s, seq).case_steps) for seq in range(48)]
    assert first == again
    assert len(set(first)) > 5
    other_seed = s.model_copy(update={"seed": s.seed + 1})
    assert [tuple(step.ref for step in assign(other_seed, seq).case_steps) for seq in range(48)] != first


def test_between_latin_square_case_order_balances_positions() -> None:
    s = study("citations_between").model_copy(update={"counterbalancing": "latin_square"})
    n_cases = len(s.cases.items)
    orders = [[step.ref for step in assign(s, seq).case_steps] for seq in range(n_cases * 5)]
    for position in range(n_cases):
        assert set(Counter(order[position] for order in orders).values()) == {5}


def test_within_random_counterbalancing_is_roughly_even() -> None:
    s = study("reference_images_within").model_copy(update={"counterbalancing": "random"})
    orders = Counter(tuple(assign(s, seq).arm_order) for seq in range(400))
    assert set(orders) == {("with_references", "without_references"), ("without_references", "with_references")}
    assert min(orders.values()) > 160  # binomial(400, 0.5): below 160 has probability < 1e-4
