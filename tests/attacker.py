"""The attacker of published figures: the smallest and the largest value a hidden count can
take given every published number (two linear programmes, HiGHS through scipy). Each test
writes the published numbers and what it knows of their relations as linear constraints;
this only solves them, so the tests' models stay their own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linprog

Rows = Sequence[Sequence[float]]


def interval(
    objective: Sequence[float],
    a_eq: Rows | None,
    b_eq: Sequence[float] | None,
    a_ub: Rows | None = None,
    b_ub: Sequence[float] | None = None,
) -> tuple[float, float]:
    """(min, max) of ``objective · x`` over x >= 0 with ``a_eq x = b_eq`` and ``a_ub x <= b_ub``
    (the maximum may be infinite)."""
    kw: dict[str, Any] = {"bounds": (0, None), "method": "highs"}
    if a_eq is not None and len(a_eq):
        kw |= {"A_eq": np.asarray(a_eq, dtype=float), "b_eq": np.asarray(b_eq, dtype=float)}
    if a_ub is not None and len(a_ub):
        kw |= {"A_ub": np.asarray(a_ub, dtype=float), "b_ub": np.asarray(b_ub, dtype=float)}
    c = np.asarray(objective, dtype=float)
    low, high = linprog(c, **kw), linprog(-c, **kw)
    assert low.status == 0, low.message  # the published numbers are consistent
    return float(low.fun), (np.inf if high.status == 3 else float(-high.fun))
