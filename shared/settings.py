"""Validated settings shared by every service.

Each service subclasses :class:`ServiceSettings` with its own environment prefix
(``STORE_``, ``DISPATCHER_``, ...), so one compose file can configure all of them
without clashes. Secrets (broker and database URLs carry credentials) have no default:
a service that lacks one refuses to start and names the variable.
"""

from __future__ import annotations

import base64
import binascii
import os
import socket
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "deploy" / "config" / "hotline.yaml"


def _instance_id() -> str:
    # Unique per process: names the exclusive queues of this replica (chat sockets, console events).
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclasses set ``env_prefix``."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    amqp_url: SecretStr = Field(description="RabbitMQ URL, e.g. amqp://user:pass@host:5672/vhost")
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP server binds")
    http_port: int = Field(default=8080, ge=0, le=65535, description="Port of the HTTP server")
    config_path: Path = Field(
        default=DEFAULT_CONFIG_PATH, description="Hotline configuration (YAML): lines, queues"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level that is logged"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="json in containers; auto picks console on a terminal"
    )
    prefetch: int = Field(default=100, ge=1, le=10_000, description="AMQP prefetch per consumer")
    shutdown_timeout: float = Field(
        default=10.0, gt=0, description="Seconds in-flight work may take to finish on SIGTERM"
    )
    instance_id: str = Field(
        default_factory=_instance_id, description="Replica name; defaults to host-pid-random"
    )
    startup_timeout: float = Field(
        default=60.0, gt=0, description="Seconds to wait for the broker and database at start"
    )


class DatabaseSettings(ServiceSettings):
    """Settings of a service that keeps data in MongoDB."""

    mongo_url: SecretStr = Field(description="MongoDB URL, e.g. mongodb://host:27017/")
    mongo_database: str = Field(default="hotline", description="MongoDB database name")


MASTER_KEY_BYTES = 96  # what libmongocrypt's "local" KMS provider takes


def parse_master_key(text: str) -> bytes:
    """A master key from its base64 form (surrounding spaces ignored); ValueError naming what
    is wrong, never the key."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a master key is base64: openssl rand -base64 96") from None
    if len(key) != MASTER_KEY_BYTES:
        raise ValueError(f"a master key is {MASTER_KEY_BYTES} bytes, this one is {len(key)}")
    return key


KmsProvider = Literal["local", "kmip"]


@dataclass(frozen=True)
class KmipServer:
    """A KMIP server that holds the master key (conversations/vault.py): where it is, the CA that
    signed its certificate, this service's client certificate and key (one PEM file), and the
    KMIP id of the master key (None: only unwraps, as while rotating away from it)."""

    endpoint: str
    ca_file: Path
    cert_file: Path
    key_id: str | None


@dataclass(frozen=True)
class MasterKeys:
    """What wraps and unwraps the data keys: ``provider`` wraps new ones (and rotation wraps
    every one again under it); each configured key or server unwraps those it wrapped."""

    provider: KmsProvider
    local: bytes | None
    previous_local: bytes | None
    kmip: KmipServer | None

    def uses_kms(self) -> bool:
        """True when a key server is configured: the transit key then comes from the key vault
        (shared/transit.py) and readiness asks the server."""
        return self.kmip is not None


class VaultSettings(BaseSettings):
    """The master key and the key vault (conversations/vault.py, docs/privacy.md): for the
    services that store or read what people wrote, and the key commands."""

    # A service wraps new data keys under one KMIP key; the key command that makes it does not.
    needs_kmip_key_id: ClassVar[bool] = True

    kms_provider: KmsProvider = Field(
        default="local",
        description="What wraps the data keys: local (the MASTER_KEY given to each service) or kmip "
        "(a KMIP server holds the master key; it never reaches the services)",
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="Local master key that wraps the data keys of what people wrote: 96 random bytes, "
        "base64 (openssl rand -base64 96); the same in every service, never in the database. Required "
        "with KMS_PROVIDER=local; with kmip, only while rotating away from it",
    )
    previous_master_key: SecretStr | None = Field(
        default=None,
        description="While the master key is replaced: the one before it, until "
        "python -m services.store.keys rotate has run",
    )
    kmip_endpoint: str | None = Field(
        default=None,
        description="KMIP server, host:port (required with KMS_PROVIDER=kmip; kept while rotating "
        "from kmip to local)",
    )
    kmip_ca_file: FilePath | None = Field(
        default=None, description="PEM file of the CA that signed the KMIP server's certificate"
    )
    kmip_cert_file: FilePath | None = Field(
        default=None,
        description="PEM file with this service's KMIP client certificate and its private key",
    )
    kmip_key_id: str | None = Field(
        default=None,
        description="KMIP id of the master key that wraps new data keys (python -m "
        "services.store.keys kmip-key makes one); required with KMS_PROVIDER=kmip",
    )
    key_vault_database: str | None = Field(
        default=None,
        description="Database of the data keys (default: the MONGO_DATABASE name and _keys); "
        "back it up apart from the data",
    )

    @field_validator("master_key", "previous_master_key")
    @classmethod
    def _a_master_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_master_key(value.get_secret_value())
        return value

    @field_validator("kmip_endpoint")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is not None:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("a KMIP endpoint is host:port, e.g. kmip.example.org:5696")
        return value

    @model_validator(mode="after")
    def _a_key_that_wraps(self) -> VaultSettings:
        kmip = (self.kmip_endpoint, self.kmip_ca_file, self.kmip_cert_file)
        if any(v is not None for v in kmip) and not all(v is not None for v in kmip):
            raise ValueError("KMIP_ENDPOINT, KMIP_CA_FILE and KMIP_CERT_FILE go together")
        if self.kms_provider == "local" and self.master_key is None:
            raise ValueError("KMS_PROVIDER=local needs MASTER_KEY (openssl rand -base64 96)")
        if self.kms_provider == "kmip" and (
            self.kmip_endpoint is None or (self.needs_kmip_key_id and not self.kmip_key_id)
        ):
            raise ValueError(
                "KMS_PROVIDER=kmip needs KMIP_ENDPOINT, KMIP_CA_FILE, KMIP_CERT_FILE and KMIP_KEY_ID"
            )
        return self

    def key_vault_namespace(self, database: str) -> str:
        return f"{self.key_vault_database or database + '_keys'}.data_keys"

    def master_keys(self) -> MasterKeys:
        def local(value: SecretStr | None) -> bytes | None:
            return parse_master_key(value.get_secret_value()) if value is not None else None

        kmip = None
        if (
            self.kmip_endpoint is not None
            and self.kmip_ca_file is not None
            and self.kmip_cert_file is not None
        ):
            kmip = KmipServer(
                self.kmip_endpoint,
                self.kmip_ca_file,
                self.kmip_cert_file,
                self.kmip_key_id if self.kms_provider == "kmip" else None,
            )
        return MasterKeys(self.kms_provider, local(self.master_key), local(self.previous_master_key), kmip)


class TextSettings(DatabaseSettings, VaultSettings):
    """Settings of a service that stores or reads what people wrote, which is sealed with data
    keys wrapped by the master key."""


S = TypeVar("S", bound=ServiceSettings)


def load_settings(cls: type[S]) -> S:
    """Build settings from the environment or exit with a message naming each bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        lines = [f"configuration error in {cls.__name__}:"]
        for err in exc.errors():
            # A rule across settings (which key wraps) names its variables in its message.
            name = prefix + ("_".join(str(p) for p in err["loc"]).upper() if err["loc"] else "*")
            lines.append(f"  {name}: {err['msg']}")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
