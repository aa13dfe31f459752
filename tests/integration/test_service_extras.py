"""Each service's image installs only its extra (deploy/Dockerfile: ``pip install -c
deploy/constraints.txt ".[<service>]"`` then ``import services.<service>.app``). The same here,
for real: a clean virtual environment per service, the extra with the pinned constraints, and
the service's composition root imported from outside the source tree. A service whose code
needs a library its extra does not install fails here, not in production."""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path

import pytest

from deploy.local.services import SERVICES

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


async def run(*argv: str, cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()
(PIP,) = re.findall(r'pip install "(pip==[0-9.]+)"', DOCKERFILE)

# What deploy/Dockerfile copies into the image before it installs the extra.
SOURCES = [
    source
    for line in DOCKERFILE.split("pip install -c")[0].splitlines()
    if line.startswith("COPY ") and "--from" not in line
    for source in line.split()[1:-1]
]


async def build_wheel(base: Path) -> Path:
    """The project's wheel, built once from a copy of what the image copies (a build in the
    checkout itself would write build/ there, and builds running side by side would clash)."""
    source = base / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    code, out = await run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "-w",
        str(base / "wheels"),
        str(source),
        cwd=base,
    )
    assert code == 0, out[-2000:]
    (wheel,) = (base / "wheels").glob("*.whl")
    return wheel


async def install_and_import(service: str, base: Path, wheel: Path) -> tuple[str, int, str]:
    venv = base / f"venv-{service}"
    code, out = await run(sys.executable, "-m", "venv", str(venv), cwd=base)
    if code:
        return service, code, out
    python = str(venv / "bin" / "python")
    # The pip the image pins first: the one a venv bundles does not match an extra's name
    # normalised by PEP 685 (email_ingest vs email-ingest) and installs without it, only warning.
    code, out = await run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", PIP, cwd=base)
    if code:
        return service, code, out
    constraints = str(ROOT / "deploy" / "constraints.txt")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", constraints]
    code, out = await run(*pip, f"{wheel}[{service}]", cwd=base)
    if code:
        return service, code, out
    # -P and a working directory outside the checkout: the installed package is imported,
    # not the source tree beside it.
    code, out = await run(python, "-P", "-c", f"import services.{service}.app", cwd=base)
    return service, code, out


async def test_each_service_extra_installs_into_a_clean_environment_and_imports(tmp_path: Path) -> None:
    wheel = await build_wheel(tmp_path)
    results = await asyncio.gather(*(install_and_import(s, tmp_path, wheel) for s in SERVICES))
    failed = {service: out[-2000:] for service, code, out in results if code}
    assert failed == {}, failed
