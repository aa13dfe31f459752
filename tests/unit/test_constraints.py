"""Images install exact, tested versions: every runtime dependency is pinned in
deploy/constraints.txt, within the range pyproject.toml allows, and the Dockerfile uses it."""

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def pins() -> dict[str, Version]:
    out = {}
    for line in (ROOT / "deploy" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = Version(version)
    return out


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra, items in project["optional-dependencies"].items():
        if extra != "dev":
            reqs += [Requirement(r) for r in items if not r.startswith("hotline-gateway")]
    return reqs


def test_every_runtime_dependency_is_pinned_within_its_range():
    pinned = pins()
    for req in runtime_requirements():
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not pinned in deploy/constraints.txt"
        assert pinned[name] in req.specifier, f"{req.name}=={pinned[name]} is outside {req.specifier}"


def test_the_image_installs_with_the_constraints():
    assert '-c deploy/constraints.txt ".[${SERVICE}]"' in (ROOT / "deploy" / "Dockerfile").read_text()
