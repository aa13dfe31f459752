from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ChatIngestSettings(ServiceSettings):
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
