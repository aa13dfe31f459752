"""Validated settings shared by every service.

Each service subclasses :class:`ServiceSettings` with its own environment prefix
(``STORE_``, ``DISPATCHER_``, ...), so one compose file can configure all of them
without clashes. Secrets (broker and database URLs carry credentials) have no default:
a service that lacks one refuses to start and names the variable.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
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


S = TypeVar("S", bound=ServiceSettings)


def load_settings(cls: type[S]) -> S:
    """Build settings from the environment or exit with a message naming each bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = cls.model_config.get("env_prefix", "")
        lines = [f"configuration error in {cls.__name__}:"]
        for err in exc.errors():
            name = prefix + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"  {name}: {err['msg']}")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
