from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import DatabaseSettings


class EmailIngestSettings(DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMAIL_INGEST_")

    http_port: int = Field(default=8082, ge=0, le=65535, description="Health and metrics port")
    line: str = Field(default="113", description="Line whose inbox this mailbox is")
    imap_host: str = Field(default="127.0.0.1", description="IMAP server")
    imap_port: int = Field(default=993, ge=1, le=65535, description="IMAP port")
    imap_tls: bool = Field(default=True, description="Implicit TLS (IMAPS); off only on loopback")
    imap_user: str = Field(description="IMAP login of the line's mailbox")
    imap_password: SecretStr = Field(description="IMAP password of the line's mailbox")
    imap_mailbox: str = Field(default="INBOX", description="Folder to watch")
    idle_seconds: float = Field(
        default=300,
        gt=0,
        le=1740,
        description="Re-issue IDLE this often (RFC 2177: servers may drop it after 29 min)",
    )
    reconnect_max_seconds: float = Field(default=60, gt=0, description="Backoff ceiling")
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server for replies")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="STARTTLS, implicit TLS, or plain (loopback only)"
    )
    smtp_user: str | None = Field(default=None, description="SMTP login, if the server wants one")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password")
    from_address: str = Field(description="From address of replies, e.g. hotline@example.org")
    from_name: str = Field(default="", description="Display name; empty for a neutral sender")
    message_id_domain: str = Field(
        default="hotline.invalid", description="Right-hand side of our Message-IDs"
    )
    max_mail_bytes: int = Field(default=25 * 1024 * 1024, gt=0, description="Larger mail is refused")
