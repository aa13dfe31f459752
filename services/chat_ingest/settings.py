from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.peers import IpNetwork, networks
from shared.settings import TextSettings


class TelegramBot(BaseModel):
    """One Telegram bot: the line it serves and its secrets."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    line: str = Field(description="line (a key under `lines:` of the hotline configuration)")
    token: SecretStr = Field(description="Bot API token from @BotFather")
    webhook_secret: SecretStr = Field(
        description="secret_token given to setWebhook (16-256 of A-Z a-z 0-9 _ -); checked on every update"
    )

    @field_validator("webhook_secret")
    @classmethod
    def _secret_form(cls, value: SecretStr) -> SecretStr:
        # The Bot API accepts only these characters in secret_token; a shorter one is guessable.
        if not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", value.get_secret_value()):
            raise ValueError("16-256 characters of A-Z, a-z, 0-9, _ and -")
        return value


class ChatIngestSettings(TextSettings):
    model_config = SettingsConfigDict(env_prefix="CHAT_INGEST_")

    http_port: int = Field(default=8081, ge=0, le=65535, description="Widget, socket and webhook")
    default_line: str = Field(default="dv", description="Line of a chat whose start names none")
    max_frame_bytes: int = Field(default=16 * 1024, ge=1024, description="Largest client frame")
    max_text_chars: int = Field(default=4000, ge=1, description="Longest chat message")
    frames_per_second: float = Field(default=5, gt=0, description="Sustained frame rate allowed")
    frame_burst: int = Field(default=20, ge=1, description="Frames allowed in a burst")
    max_connections: int = Field(default=10_000, ge=1, description="Sockets held at once")
    outbound_queue: int = Field(default=64, ge=1, description="Frames buffered per slow client")
    heartbeat_seconds: float = Field(default=25, gt=0, description="WebSocket ping interval")
    handshake_seconds: float = Field(
        default=30,
        gt=0,
        description="A socket that holds no chat this long after opening (no accepted start or "
        "resume) is sent handshake_timeout and closed; one waiting for the database is not",
    )
    session_ttl_seconds: float = Field(
        default=24 * 3600,
        gt=0,
        description="A chat session is deleted this long after its last use (started, resumed, "
        "ended, or a socket attached); resuming it later starts a new chat",
    )
    telegram_chat_ttl_seconds: float = Field(
        default=30 * 24 * 3600,
        gt=0,
        description="A Telegram chat's remembered choices (language, region, topic) are deleted "
        "this long after its last update",
    )
    sweep_seconds: float = Field(
        default=60, gt=0, description="How often expired chat sessions and Telegram records are deleted"
    )
    max_starts_per_socket: int = Field(
        default=5,
        ge=1,
        description="Chats one socket may start; beyond it start is refused (too_many_sessions)",
    )
    session_starts_per_second: float = Field(
        default=100,
        gt=0,
        description="New chats one process accepts a second; beyond it start is refused (busy)",
    )
    session_start_burst: int = Field(
        default=2000, ge=1, description="New chats one process accepts in a burst above that rate"
    )
    max_sockets_per_source: int = Field(
        default=20,
        ge=1,
        description="Chat sockets one client address (an IPv6 /64) may hold at once on one process; "
        "beyond it a socket is sent too_many_sockets and closed with code 4429",
    )
    starts_per_source_per_minute: int = Field(
        default=30,
        ge=1,
        description="New chats one client address (an IPv6 /64) may start a minute on one process; "
        "beyond it start is refused (too_many_starts)",
    )
    trusted_proxies: Annotated[list[IpNetwork], NoDecode] = Field(
        default=[],
        description="Addresses (CIDR, comma-separated) of the reverse proxies whose X-Real-IP names the "
        "client's address; used only to count sockets and starts per source, never stored or logged",
    )
    telegram_bots: Annotated[dict[str, TelegramBot], NoDecode] = Field(
        default_factory=dict,
        description='JSON: bot name -> {"line", "token", "webhook_secret"}; empty: no Telegram',
    )
    client_key_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Secret of the keyed hash that names a Telegram chat in the database instead of "
        "its chat id (the same value as the dispatcher's and the store's, never changed; "
        "docs/privacy.md); required with Telegram bots",
    )
    telegram_api_base: str = Field(
        default="https://api.telegram.org", description="Bot API base URL (tests use a stand-in)"
    )
    telegram_max_retry_after: float = Field(
        default=60, gt=0, description="Longest 429 retry_after waited before giving the send back"
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return networks(value)

    @field_validator("telegram_bots", mode="before")
    @classmethod
    def _bots_json(cls, value: Any) -> Any:
        # Compose passes an unset variable as "": no bots.
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @model_validator(mode="after")
    def _bots_need_the_client_key(self) -> ChatIngestSettings:
        if self.telegram_bots and self.client_key_secret is None:
            raise ValueError("CHAT_INGEST_CLIENT_KEY_SECRET is required with Telegram bots")
        return self

    @field_validator("telegram_bots")
    @classmethod
    def _bot_names(cls, value: dict[str, TelegramBot]) -> dict[str, TelegramBot]:
        for name in value:
            if not name.replace("_", "").replace("-", "").isalnum() or len(name) > 40:
                raise ValueError(f"bot name {name!r}: letters, digits, - and _ only (it is a URL part)")
        return value
