"""A service refuses to start on a bad setting and names it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.local.services import new_master_key

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
    ("module", "prefix", "secrets"),
    [
        ("services.store", "STORE_", ["AMQP_URL", "MONGO_URL", "CLIENT_KEY_SECRET"]),
        ("services.dispatcher", "DISPATCHER_", ["AMQP_URL", "MONGO_URL", "CLIENT_KEY_SECRET"]),
        ("services.email_ingest", "EMAIL_INGEST_", ["AMQP_URL", "MONGO_URL", "FROM_ADDRESS"]),
        ("services.chat_ingest", "CHAT_INGEST_", ["AMQP_URL", "MONGO_URL"]),
    ],
)
def test_missing_secrets_are_named(module, prefix, secrets):
    result = _run(module, {})
    assert result.returncode == 2
    named = {line.split(":")[0].strip() for line in result.stderr.splitlines() if "Field required" in line}
    assert named >= {prefix + s for s in secrets}
    assert all(n.startswith(prefix) for n in named)


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
            "DISPATCHER_CLIENT_KEY_SECRET": "k" * 32,
            "DISPATCHER_MASTER_KEY": new_master_key(),
            "DISPATCHER_CONFIG_PATH": str(bad),
        },
    )
    assert result.returncode == 2
    assert str(bad) in result.stderr and "organisations" in result.stderr


@pytest.mark.parametrize(
    ("module", "prefix"), [("services.store", "STORE_"), ("services.dispatcher", "DISPATCHER_")]
)
def test_a_short_client_key_secret_is_refused(module, prefix):
    env = {
        prefix + "AMQP_URL": "amqp://x",
        prefix + "MONGO_URL": "mongodb://x",
        prefix + "CLIENT_KEY_SECRET": "short",
    }
    result = _run(module, env)
    assert result.returncode == 2
    # Named, and the value not repeated (a secret is never printed).
    assert prefix + "CLIENT_KEY_SECRET" in result.stderr and "short" not in result.stderr


def test_telegram_bots_need_the_client_key_secret():
    bots = '{"dvbot": {"line": "dv", "token": "1:x", "webhook_secret": "' + "s" * 16 + '"}}'
    env = {
        "CHAT_INGEST_AMQP_URL": "amqp://x",
        "CHAT_INGEST_MONGO_URL": "mongodb://x",
        "CHAT_INGEST_MASTER_KEY": new_master_key(),
        "CHAT_INGEST_TELEGRAM_BOTS": bots,
    }
    result = _run("services.chat_ingest", env)
    assert result.returncode == 2
    assert "CHAT_INGEST_CLIENT_KEY_SECRET is required with Telegram bots" in result.stderr


def test_trusted_proxies_are_comma_separated_networks_and_a_bad_one_is_named(monkeypatch):
    from services.store.settings import StoreSettings

    required = {
        "STORE_AMQP_URL": "amqp://x",
        "STORE_MONGO_URL": "mongodb://x",
        "STORE_CLIENT_KEY_SECRET": "k" * 32,
        "STORE_MASTER_KEY": new_master_key(),
    }
    for name, value in {**required, "STORE_TRUSTED_PROXIES": "10.0.0.0/8, 172.16.0.1,fd00::/8"}.items():
        monkeypatch.setenv(name, value)
    assert [str(n) for n in StoreSettings().trusted_proxies] == ["10.0.0.0/8", "172.16.0.1/32", "fd00::/8"]
    result = _run("services.store", {**required, "STORE_TRUSTED_PROXIES": "10.0.0.0/8,proxy"})
    assert result.returncode == 2 and "STORE_TRUSTED_PROXIES" in result.stderr


def _dispatcher(**extra: str) -> dict[str, str]:
    return {
        "DISPATCHER_AMQP_URL": "amqp://x",
        "DISPATCHER_MONGO_URL": "mongodb://x",
        "DISPATCHER_CLIENT_KEY_SECRET": "k" * 64,
        **{f"DISPATCHER_{k.upper()}": v for k, v in extra.items()},
    }


def test_the_master_key_or_a_kmip_server_is_required_and_a_missing_kmip_file_is_named(tmp_path):
    """conversations/vault.py: local needs MASTER_KEY; kmip needs its server, its files (that
    exist) and its key id; each refusal names what to set, at start."""
    result = _run("services.dispatcher", _dispatcher())
    assert result.returncode == 2 and "KMS_PROVIDER=local needs MASTER_KEY" in result.stderr

    ca = tmp_path / "ca.pem"
    ca.write_text("")
    kmip = {"kms_provider": "kmip", "kmip_endpoint": "127.0.0.1:5696", "kmip_ca_file": str(ca)}
    result = _run("services.dispatcher", _dispatcher(**kmip, kmip_cert_file=str(tmp_path / "absent.pem")))
    assert result.returncode == 2
    assert "DISPATCHER_KMIP_CERT_FILE: Path does not point to a file" in result.stderr

    result = _run("services.dispatcher", _dispatcher(**kmip, kmip_cert_file=str(ca)))
    assert result.returncode == 2 and "KMS_PROVIDER=kmip needs" in result.stderr
    assert "KMIP_KEY_ID" in result.stderr

    result = _run("services.dispatcher", _dispatcher(**{**kmip, "kmip_endpoint": "kmip.example.org"}))
    assert result.returncode == 2 and "DISPATCHER_KMIP_ENDPOINT" in result.stderr
