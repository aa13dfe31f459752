from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import DatabaseSettings


class DispatcherSettings(DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCHER_")

    http_port: int = Field(default=8083, ge=0, le=65535, description="Health and metrics port")
    message_id_domain: str = Field(
        default="hotline.invalid", description="Right-hand side of Message-IDs of automatic e-mail answers"
    )
    sweep_seconds: float = Field(
        default=30, gt=0, description="How often claim time-outs and crisis escalations are checked"
    )
