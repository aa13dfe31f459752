"""Each test's tier marker comes from what it starts (tests/conftest.py, ``tier_of``), so
`make test-fast` (unit and server) never starts a service or a browser."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from tests.conftest import ROOT, TIERS, tier_of


@dataclass
class Item:
    path: Path
    fixturenames: tuple[str, ...]


def tier(where: str, *fixtures: str) -> str:
    return tier_of(cast(Any, Item(ROOT / "tests" / where / "test_x.py", fixtures)))


def test_what_a_test_starts_decides_its_tier() -> None:
    assert tier("unit") == "unit"
    assert tier("integration", "stack", "repo") == "server"
    assert tier("integration", "stack", "gateway") == "system"
    assert tier("reliability", "stack", "dispatchers") == "system"
    assert tier("integration", "stack", "gateway", "browser") == "browser"
    assert set(TIERS) == {"unit", "server", "system", "browser"}


def test_this_test_is_marked_unit(request: pytest.FixtureRequest) -> None:
    assert [m.name for m in request.node.iter_markers() if m.name in TIERS] == ["unit"]
