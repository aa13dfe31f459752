from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import TextSettings


class DispatcherSettings(TextSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCHER_")

    http_port: int = Field(default=8083, ge=0, le=65535, description="Health and metrics port")
    client_key_secret: SecretStr = Field(
        min_length=32,
        description="Secret of the keyed hash that finds a client by e-mail address or Telegram user; "
        "the same value in the dispatcher and the store, never changed (docs/privacy.md)",
    )
    message_id_domain: str = Field(
        default="hotline.invalid", description="Right-hand side of Message-IDs of automatic e-mail answers"
    )
    sweep_seconds: float = Field(
        default=30, gt=0, description="How often claim time-outs and crisis escalations are checked"
    )
