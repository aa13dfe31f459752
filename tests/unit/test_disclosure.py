"""Secondary cell suppression, tried as an attacker would: from every number shown, the
smallest and the largest value each hidden cell can take (two linear programmes, HiGHS).

The attacker here does not reuse the module's relations: it works on the microdata cells
(every combination of answers, each >= 0) and writes each shown number as the sum of the
combinations it counts, which is all a reader of the tables can know.
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.store.disclosure import Cover, Problem, Sum, protect
from tests.attacker import interval

ALL = "*"  # a margin's dropped dimension


def full_table(inner: dict[tuple[str, ...], int], domains: list[list[str]]) -> Problem:
    """A table of single-answer dimensions with every margin, as the module is given it."""
    counts: dict[tuple[str, ...], int] = {}
    for key in itertools.product(*[[*d, ALL] for d in domains]):
        counts[key] = sum(
            n for cell, n in inner.items() if all(k in (ALL, c) for k, c in zip(key, cell, strict=False))
        )
    relations = []
    for key in counts:
        for i, k in enumerate(key):
            if k == ALL:
                parts = tuple((*key[:i], v, *key[i + 1 :]) for v in domains[i])
                relations.append(Sum(key, parts))
    return Problem(counts, relations)


def attack(
    atoms: list[tuple[str, ...]], shown: dict[tuple[str, ...], int], hidden: list[tuple[str, ...]], covers
):
    """{hidden cell: (min, max)} over non-negative atoms where every shown cell is the sum of
    the atoms ``covers(cell, atom)`` says it counts."""
    a_eq = [[1.0 if covers(cell, atom) else 0.0 for atom in atoms] for cell in shown]
    b_eq = [float(n) for n in shown.values()]
    return {
        cell: interval([1.0 if covers(cell, atom) else 0.0 for atom in atoms], a_eq, b_eq) for cell in hidden
    }


def single(cell: tuple[str, ...], atom: tuple[str, ...]) -> bool:
    return all(k in (ALL, a) for k, a in zip(cell, atom, strict=False))


small_counts = st.integers(0, 14).map(lambda n: n if n < 9 else n * 3)  # many small, some large


@st.composite
def tables(draw: st.DrawFn) -> tuple[dict[tuple[str, ...], int], list[list[str]]]:
    dims = draw(st.integers(1, 3))
    domains = [[f"d{i}v{j}" for j in range(draw(st.integers(2, 4 if dims < 3 else 3)))] for i in range(dims)]
    inner = {cell: draw(small_counts) for cell in itertools.product(*domains)}
    return inner, domains


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), st.sampled_from([3, 5]))
def test_no_hidden_cell_of_a_table_and_its_margins_can_be_narrowed(table, threshold: int) -> None:
    inner, domains = table
    problem = full_table(inner, domains)
    hidden = protect(problem, threshold)
    primary = {k for k, n in problem.counts.items() if 0 < n < threshold}
    assert primary <= hidden
    assert all(problem.counts[k] > 0 for k in hidden)  # a zero is said by its absence anyway
    if not primary:
        assert not hidden
    shown = {k: n for k, n in problem.counts.items() if k not in hidden}
    atoms = list(itertools.product(*domains))
    for cell, (low, high) in attack(atoms, shown, sorted(hidden), single).items():
        assert low <= problem.counts[cell] <= high + 1e-6
        assert high - low >= threshold - 1e-6, (cell, low, high, problem.counts[cell])


def test_the_gender_by_age_attack_of_the_issue_no_longer_works() -> None:
    """Four small cells under 5 in gender x age, given back exactly by the gender table, the
    age table and the total when each table is suppressed on its own."""
    inner = {("f", "18"): 3, ("f", "27"): 40, ("m", "18"): 2, ("m", "27"): 30, ("o", "18"): 1, ("o", "27"): 4}
    domains = [["f", "m", "o"], ["18", "27"]]
    problem = full_table(inner, domains)
    hidden = protect(problem, 5)
    shown = {k: n for k, n in problem.counts.items() if k not in hidden}
    result = attack(list(itertools.product(*domains)), shown, sorted(hidden), single)
    assert {("f", "18"), ("m", "18"), ("o", "18"), ("o", "27")} <= set(result)
    assert all(high - low >= 5 for low, high in result.values())


@st.composite
def answers(draw: st.DrawFn) -> list[tuple[str, frozenset[str]]]:
    """Consultations as (gender, the set of topics answered, "none" for none)."""
    topics = ["work", "study", "visa"][: draw(st.integers(2, 3))]
    sets = [frozenset(s) for r in range(1, len(topics) + 1) for s in itertools.combinations(topics, r)]
    people = draw(st.lists(st.tuples(st.sampled_from(["f", "m"]), st.sampled_from(sets)), max_size=40))
    return people


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers())
def test_a_question_with_several_answers_is_protected_against_the_microdata_attacker(people) -> None:
    """Topics (several per consultation) by gender, with the gender table and the total. The
    module knows only Sum and Cover; the attacker counts every (gender, set of topics)."""
    topics = sorted({t for _, s in people for t in s} | {"work", "study"})
    genders = ["f", "m"]
    counts: Counter[tuple[str, str]] = Counter()
    for g, s in people:
        counts[(ALL, ALL)] += 1
        counts[(g, ALL)] += 1
        for t in s:
            counts[(ALL, t)] += 1
            counts[(g, t)] += 1
    cells = {(g, t): counts[(g, t)] for g in [*genders, ALL] for t in [*topics, ALL]}
    relations: list[Sum | Cover] = [Sum((ALL, ALL), tuple((g, ALL) for g in genders))]
    for t in topics:
        relations.append(Sum((ALL, t), tuple((g, t) for g in genders)))
    for g in [*genders, ALL]:
        relations.append(Cover((g, ALL), tuple((g, t) for t in topics)))
    problem = Problem(cells, relations)
    hidden = protect(problem, 5)
    shown = {k: n for k, n in cells.items() if k not in hidden}
    sets = [frozenset(s) for r in range(1, len(topics) + 1) for s in itertools.combinations(topics, r)]
    atoms = [(g, s) for g in genders for s in sets]

    def covers(cell, atom) -> bool:
        g, t = cell
        return g in (ALL, atom[0]) and (t == ALL or t in atom[1])

    for cell, (low, high) in attack(atoms, shown, sorted(hidden), covers).items():
        assert high - low >= 5 - 1e-6, (cell, low, high)


def test_counts_that_contradict_their_relations_are_refused() -> None:
    problem = Problem({"total": 10, "a": 6, "b": 7, "c": 2}, [Sum("total", ("a", "b", "c"))])
    with pytest.raises(ValueError, match="contradict"):
        protect(problem, 5)
