from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.peers import IpNetwork, networks
from shared.settings import TextSettings


class StoreSettings(TextSettings):
    model_config = SettingsConfigDict(env_prefix="STORE_")

    http_port: int = Field(default=8080, ge=0, le=65535, description="Console, API and health")
    client_key_secret: SecretStr = Field(
        min_length=32,
        description="Secret of the keyed hash that finds a client by e-mail address or Telegram user; "
        "the same value in the dispatcher and the store, never changed (docs/privacy.md)",
    )
    session_hours: float = Field(default=12, gt=0, description="A login lasts at most this long")
    cookie_secure: bool = Field(default=True, description="Secure cookie; off only for plain-HTTP dev")
    message_id_domain: str = Field(
        default="hotline.invalid", description="Right-hand side of Message-IDs of e-mail replies"
    )
    login_attempts: int = Field(default=5, ge=1, description="Failed logins allowed per window")
    login_window_seconds: float = Field(default=300, gt=0, description="Login rate-limit window")
    trusted_proxies: Annotated[list[IpNetwork], NoDecode] = Field(
        default=[],
        description="Addresses (CIDR, comma-separated) of the reverse proxies whose X-Real-IP names the "
        "address a log-in comes from; used only to throttle failed log-ins, never stored or logged",
    )
    require_totp: str = Field(
        default="",
        description="Roles that must log in with a second factor (a TOTP code), comma-separated, "
        "or all; empty: only accounts that enrolled use one (services/store/totp.py)",
    )
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, description="Largest API request body")
    max_reply_attachment_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1024,
        le=10 * 1024 * 1024,
        description="Largest file a consultant may attach to an e-mail reply (PDF or image), as sent; "
        "the proxy's limit for that route must be above it",
    )
    stats_timezone: str = Field(
        default="Europe/Minsk", description="Time zone that decides a consultation's day, month and year"
    )
    stats_min_cell: int = Field(
        default=5, ge=1, description="Published statistics suppress cells counting fewer consultations"
    )
    retention_days: int = Field(
        default=365,
        ge=1,
        description="Free text of threads closed longer ago is deleted (a line's retention.days wins)",
    )
    retention_unclosed_days: int = Field(
        default=365,
        ge=1,
        description="Free text of threads never closed and without a message this long is deleted "
        "(a line's retention.unclosed_days wins)",
    )
    retention_interval_hours: float = Field(
        default=24, ge=0, description="How often retention runs (one replica at a time); 0 turns it off"
    )
    retention_check_seconds: float = Field(
        default=300, gt=0, description="How often a replica asks whether a retention pass is due"
    )
    outbox_seconds: float = Field(
        default=5,
        gt=0,
        description="How often replies stored but not yet handed to the broker (it was away) are published",
    )
    hold_check_seconds: float = Field(
        default=30,
        gt=0,
        description="How often replies a client's safe-contact plan holds are checked, and sent once allowed",
    )
    hold_page: int = Field(
        default=500,
        ge=1,
        description="Held replies read at a time by the pass that sends those a plan allows again",
    )
    console_gone_minutes: float = Field(
        default=5,
        gt=0,
        description="A consultant whose console has had no live connection this long is made away: "
        "their chats go back to the queue (docs/console.md, A shift)",
    )
    away_email_minutes: float = Field(
        default=30,
        gt=0,
        description="A consultant away (logged out, session expired, console gone, said away) this long "
        "gives back every thread they hold, e-mails too, even answered ones",
    )
    handoff_minutes: float = Field(
        default=10,
        gt=0,
        description="An offer of a thread to a colleague not accepted this long lapses: the thread stays "
        "with the one who offered it, or goes back to its queue when they are not available",
    )
    shift_check_seconds: float = Field(
        default=15,
        gt=0,
        description="How often the shift rules (away, expired, gone, lapsed offers) are applied, by one "
        "replica at a time",
    )
    metrics_refresh_seconds: float = Field(
        default=15, gt=0, description="How often queue depth, oldest wait and dead letters are measured"
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return networks(value)
