"""A service refuses to start on a bad setting and names it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"]}
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("module", "prefix"),
    [
        ("services.store", "STORE_"),
        ("services.dispatcher", "DISPATCHER_"),
        ("services.chat_ingest", "CHAT_INGEST_"),
        ("services.email_ingest", "EMAIL_INGEST_"),
    ],
)
def test_missing_secrets_are_named(module, prefix):
    result = _run(module, {})
    assert result.returncode == 2
    assert f"{prefix}AMQP_URL: Field required" in result.stderr
    assert f"{prefix}MONGO_URL: Field required" in result.stderr


def test_bad_value_is_named():
    result = _run(
        "services.dispatcher",
        {
            "DISPATCHER_AMQP_URL": "amqp://x",
            "DISPATCHER_MONGO_URL": "mongodb://x",
            "DISPATCHER_HTTP_PORT": "eighty",
            "DISPATCHER_LOG_LEVEL": "loud",
        },
    )
    assert result.returncode == 2
    assert "DISPATCHER_HTTP_PORT" in result.stderr
    assert "DISPATCHER_LOG_LEVEL" in result.stderr


def test_bad_hotline_file_is_named(tmp_path):
    bad = tmp_path / "hotline.yaml"
    bad.write_text("languages: [ru]\nlines: {}\n")
    result = _run(
        "services.dispatcher",
        {
            "DISPATCHER_AMQP_URL": "amqp://x",
            "DISPATCHER_MONGO_URL": "mongodb://x",
            "DISPATCHER_CONFIG_PATH": str(bad),
        },
    )
    assert result.returncode == 2
    assert str(bad) in result.stderr and "organisations" in result.stderr
