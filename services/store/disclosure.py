"""Disclosure control for published counts: secondary cell suppression over linked tables,
audited by linear programming (pure computation, no I/O).

A published set of tables is described as cells (any hashable key, with its count) and the
linear relations anyone can see between them:

- :class:`Sum` ``total == sum(parts)``: a margin over a question with one answer per
  consultation (gender, age group, channel, month), or a level of the organisation
  hierarchy (a line is the sum of its organisations);
- :class:`Cover` ``part <= total <= sum(parts)`` for every part: a question with several
  answers (topics), where each consultation counts under each of its answers and under
  "not answered" when it has none, so it counts at least once.

:func:`protect` hides every count from 1 to ``threshold - 1`` (primary suppression) and then
more cells (secondary suppression) until no hidden cell can be narrowed, from every number
still shown, to an interval shorter than ``threshold``. It is the audit-and-extend approach
of statistical offices' tools (tau-ARGUS's optimal and modular methods solve the same
problem; see docs/statistics.md): the audit solves, for each hidden cell, the two linear
programmes an attacker would (the smallest and the largest value the cell can take given all
shown numbers, every count >= 0) with HiGHS through :func:`scipy.optimize.linprog`; a hidden
cell whose interval is too short gets a complement, the smallest non-zero count shown beside
it in one of its relations, preferring inner cells to margins; the audit runs again until it
passes. Hiding everything always
passes, so it ends; a zero is never hidden, because an absent row already says it.

The audit splits the unknowns into independent components (cells joined by a relation with
another unknown), so each programme stays small however many tables are published.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import highspy
import numpy as np
from scipy.sparse import csc_array

Key = Any  # any hashable cell key


@dataclass(frozen=True)
class Sum:
    """``total`` is the sum of ``parts``."""

    total: Key
    parts: tuple[Key, ...]


@dataclass(frozen=True)
class Cover:
    """Each of ``parts`` is at most ``total``, and together they are at least ``total``
    (several answers to one question, each consultation under at least one)."""

    total: Key
    parts: tuple[Key, ...]


Relation = Sum | Cover


@dataclass
class Problem:
    """Counts and the relations between them. ``unpublished``: cells that are part of the
    relations but never shown to anyone (unknown to an attacker from the start)."""

    counts: dict[Key, int]
    relations: list[Relation] = field(default_factory=list)
    unpublished: set[Key] = field(default_factory=set)

    def members(self, relation: Relation) -> tuple[Key, ...]:
        return (relation.total, *relation.parts)


_UNBOUNDED = (highspy.HighsModelStatus.kUnbounded, highspy.HighsModelStatus.kUnboundedOrInfeasible)
_DECIDED = (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kInfeasible, *_UNBOUNDED)
_FIRST = threading.Lock()
_made = False


def _solver() -> highspy.Highs:
    """A HiGHS instance that prints nothing. The first one made in a process writes the
    solver's licence banner to standard output before any option can be set; standard output
    is the service's log stream, so that first one is made with it pointed at /dev/null
    (once, at import, before the service writes anything)."""
    global _made
    with _FIRST:
        if _made:
            solver = highspy.Highs()  # type: ignore[no-untyped-call]
        else:
            sys.stdout.flush()
            saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, 1)
                solver = highspy.Highs()  # type: ignore[no-untyped-call]
            finally:
                os.dup2(saved, 1)
                os.close(saved)
                os.close(devnull)
            _made = True
    solver.setOptionValue("output_flag", False)
    return solver


_solver()


class Unprotectable(RuntimeError):
    """No complement is left for a hidden cell whose interval is still too short."""


def protect(problem: Problem, threshold: int) -> frozenset[Key]:
    """The cells to hide: primary and secondary suppression, audited until every hidden cell
    spans at least ``threshold`` given everything else shown. Zeros are never hidden."""
    counts = problem.counts
    # An unpublished count is never shown, but whatever the shown ones give away of it must
    # not narrow it either: a small one is protected like a hidden one.
    hidden = {k for k, n in counts.items() if 0 < n < threshold}
    if not hidden:
        return frozenset()
    touching: dict[Key, list[int]] = {}
    for i, rel in enumerate(problem.relations):
        for k in problem.members(rel):
            touching.setdefault(k, []).append(i)
    margins = frozenset(r.total for r in problem.relations)
    audit = Audit(problem)
    while True:
        # Every cell still too narrow gets a complement in the same round (the smallest
        # first), except beside a complement just added; then the audit runs again.
        short = [k for k, (lo, hi) in audit.intervals(hidden).items() if k in hidden and hi - lo < threshold]
        if not short:
            return frozenset(hidden)
        added: set[Key] = set()
        for k in sorted(short, key=lambda k: (counts.get(k, 0), repr(k))):
            if any(m in added for i in touching.get(k, ()) for m in problem.members(problem.relations[i])):
                continue  # a complement beside it was just added: audit again first
            complement = _complement(problem, touching, hidden, margins, k)
            if complement is None:
                raise Unprotectable(f"no complement left for {k!r}")
            added.add(complement)
        hidden |= added


def _complement(
    problem: Problem,
    touching: Mapping[Key, list[int]],
    hidden: set[Key],
    margins: frozenset[Key],
    start: Key,
) -> Key | None:
    """A shown cell to hide beside ``start``, in one of its relations: a cell that is no
    relation's total before a margin (margins are what readers use most), then in a relation
    where ``start`` has the fewest other unknowns (where it is the only one, that relation
    gives it away exactly), then the smallest non-zero count. When no relation of ``start``
    has one left, relations one step further (through unknown cells), and so on."""
    unknown = hidden | problem.unpublished
    seen_rel: set[int] = set()
    frontier = [start]
    seen = {start}
    while frontier:
        ranked: list[tuple[int, int, int, str, Key]] = []
        nxt: list[Key] = []
        for k in frontier:
            for i in touching.get(k, ()):
                if i in seen_rel:
                    continue
                seen_rel.add(i)
                rel = problem.relations[i]
                members = problem.members(rel)
                others = sum(1 for m in members if m in unknown)
                for m in members:
                    n = problem.counts.get(m, 0)
                    if m in unknown:
                        if m not in seen:
                            seen.add(m)
                            nxt.append(m)
                    elif n > 0:
                        ranked.append((int(m in margins), others, n, repr(m), m))
        if ranked:
            return min(ranked)[4]
        frontier = nxt
    return None


class Audit:
    """The attacker's view of a problem: for hidden cells, the interval each can lie in."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self._cache: dict[frozenset[Key], dict[Key, tuple[float, float]]] = {}

    def intervals(self, hidden: Iterable[Key]) -> dict[Key, tuple[float, float]]:
        """(min, max) of every unknown cell (hidden or unpublished) given the others."""
        p = self.problem
        unknown = set(hidden) | {k for k in p.unpublished if k in p.counts}
        parent = {k: k for k in unknown}

        def find(k: Key) -> Key:
            while parent[k] != k:
                parent[k] = parent[parent[k]]
                k = parent[k]
            return k

        for rel in p.relations:
            free = [k for k in p.members(rel) if k in unknown]
            for a, b in itertools.pairwise(free):
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[ra] = rb
        components: dict[Key, list[Key]] = {}
        for k in unknown:
            components.setdefault(find(k), []).append(k)
        out: dict[Key, tuple[float, float]] = {}
        for cells in components.values():
            key = frozenset(cells)
            if key not in self._cache:
                self._cache[key] = self._solve(cells, unknown)
            out.update(self._cache[key])
        return out

    def _solve(self, cells: Sequence[Key], unknown: set[Key]) -> dict[Key, tuple[float, float]]:
        p = self.problem
        index = {k: i for i, k in enumerate(sorted(cells, key=repr))}
        eq_rows: list[tuple[dict[int, float], float]] = []
        ub_rows: list[tuple[dict[int, float], float]] = []

        def row(terms: Iterable[tuple[Key, float]]) -> tuple[dict[int, float], float]:
            coef: dict[int, float] = {}
            const = 0.0
            for k, a in terms:
                if k in index:
                    coef[index[k]] = coef.get(index[k], 0.0) + a
                else:
                    const -= a * p.counts.get(k, 0)
            return coef, const

        for rel in p.relations:
            if not any(k in index for k in p.members(rel)):
                continue
            if isinstance(rel, Sum):
                eq_rows.append(row([(rel.total, 1.0), *((q, -1.0) for q in rel.parts)]))
            else:
                ub_rows.append(row([(rel.total, 1.0), *((q, -1.0) for q in rel.parts)]))
                for q in rel.parts:
                    ub_rows.append(row([(q, 1.0), (rel.total, -1.0)]))

        rows = [r for r in eq_rows if r[0]] + [r for r in ub_rows if r[0]]
        lower = [c for _, c in eq_rows if _] + [-highspy.kHighsInf for _, c in ub_rows if _]
        upper = [c for _, c in rows]
        matrix = csc_array(
            (
                [a for coef, _ in rows for a in coef.values()],
                (
                    [i for i, (coef, _) in enumerate(rows) for _j in coef],
                    [j for coef, _ in rows for j in coef],
                ),
            ),
            shape=(len(rows), len(index)),
        )
        lp = highspy.HighsLp()
        lp.num_col_ = len(index)
        lp.num_row_ = len(rows)
        lp.col_cost_ = np.zeros(len(index))
        lp.col_lower_ = np.zeros(len(index))
        lp.col_upper_ = np.full(len(index), highspy.kHighsInf)
        lp.row_lower_ = np.array(lower, dtype=float)
        lp.row_upper_ = np.array(upper, dtype=float)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = matrix.indptr
        lp.a_matrix_.index_ = matrix.indices
        lp.a_matrix_.value_ = matrix.data
        solver = _solver()
        solver.passModel(lp)
        out: dict[Key, tuple[float, float]] = {}
        for k, j in index.items():
            if k not in unknown:
                continue
            found = []
            solver.changeColCost(j, 1.0)
            for sense in (highspy.ObjSense.kMinimize, highspy.ObjSense.kMaximize):
                solver.changeObjectiveSense(sense)
                solver.run()
                status = solver.getModelStatus()
                if status not in _DECIDED:
                    # A warm start can end undecided (seen as "Unknown" on a three-cell
                    # model): solve this one again from nothing before judging the model.
                    solver.clearSolver()
                    solver.run()
                    status = solver.getModelStatus()
                if status == highspy.HighsModelStatus.kOptimal:
                    found.append(solver.getInfo().objective_function_value)
                elif sense == highspy.ObjSense.kMaximize and status in _UNBOUNDED:
                    # The minimum was found just before, so the model is feasible.
                    found.append(math.inf)
                else:
                    why = solver.modelStatusToString(status)
                    raise ValueError(f"the published counts contradict their relations ({why})")
            solver.changeColCost(j, 0.0)
            out[k] = (found[0], found[1])
        return out
