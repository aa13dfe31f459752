from __future__ import annotations

from typing import Literal

from pydantic import Field, FilePath, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.config import AUTHSERV_ID
from shared.settings import TextSettings

# A database document holds at most 16 MiB; the raw mail is kept in one (see rawstore.py).
MAX_STORABLE_MAIL = 15 * 1024 * 1024


class EmailIngestSettings(TextSettings):
    """Service-wide settings, plus one mailbox given by environment (``IMAP_USER`` set).

    More mailboxes, one per line or organisation, come from the ``mailboxes`` section of the
    hotline configuration (docs/email.md); their passwords from environment variables named
    there.
    """

    model_config = SettingsConfigDict(env_prefix="EMAIL_INGEST_")

    http_port: int = Field(default=8082, ge=0, le=65535, description="Health and metrics port")
    line: str = Field(default="113", description="Line whose inbox the environment-given mailbox is")
    imap_host: str = Field(default="127.0.0.1", description="IMAP server of the environment-given mailbox")
    imap_port: int = Field(default=993, ge=1, le=65535, description="IMAP port")
    imap_tls: bool = Field(default=True, description="Implicit TLS (IMAPS); off only on loopback")
    imap_user: str | None = Field(
        default=None, description="IMAP login of the environment-given mailbox; unset: only YAML mailboxes"
    )
    imap_password: SecretStr | None = Field(default=None, description="IMAP password of that mailbox")
    imap_mailbox: str = Field(default="INBOX", description="Folder to watch")
    trusted_authserv_id: str = Field(
        default="",
        pattern=AUTHSERV_ID,
        description="authserv-id of the mail server that receives this mailbox's mail and writes "
        "Authentication-Results (RFC 8601): a mail claiming a thread's sender joins it only when "
        "that server verified it; empty: no server trusted, From is taken as it comes "
        "(docs/email.md, Authenticated threading)",
    )
    idle_seconds: float = Field(
        default=300,
        gt=0,
        le=1500,
        description="Re-issue IDLE this often; well inside the 29 min after which servers may drop it "
        "(RFC 2177); every re-issue also polls the mailbox",
    )
    watchdog_seconds: float = Field(
        default=30,
        gt=0,
        le=600,
        description="An IMAP command or the end of an IDLE that takes longer means a dead connection",
    )
    poll_seconds: float = Field(
        default=60, gt=0, description="Polling interval for a server without IDLE (the fallback)"
    )
    fetch_batch: int = Field(default=50, ge=1, le=1000, description="Mails fetched per UID FETCH command")
    backlog_after_seconds: float = Field(
        default=3600,
        gt=0,
        description="A mail that arrived on the server longer ago than this is a backlog import: "
        "it is ingested but never answered automatically",
    )
    delete_after_days: int = Field(
        default=0,
        ge=0,
        le=36500,
        description="0 (the default): never delete mail from the IMAP server. N: once a day, and at "
        "start, delete the mails handed over to the hotline that arrived on the server more than N "
        "days ago (quarantined mail stays); needs a server with UIDPLUS",
    )
    reconnect_max_seconds: float = Field(default=60, gt=0, description="Backoff ceiling")
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server for replies")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="STARTTLS (required, never a fallback to plain), implicit TLS, or plain (loopback only)",
    )
    tls_ca_file: FilePath | None = Field(
        default=None,
        description="CA bundle (PEM) trusted for the SMTP server's and the IMAP servers' certificates "
        "instead of the system's, for servers with a private CA; certificates are always verified",
    )
    smtp_user: str | None = Field(default=None, description="SMTP login, if the server wants one")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password")
    smtp_attempts: int = Field(
        default=4, ge=1, le=20, description="Tries per reply on temporary failures (4xx, network)"
    )
    smtp_retry_seconds: float = Field(
        default=1.0, gt=0, description="First retry delay; doubled at each further attempt"
    )
    send_per_minute: int = Field(
        default=60, ge=1, description="Replies per minute per line (a mailbox may set its own)"
    )
    from_address: str = Field(description="From address of replies, e.g. hotline@example.org")
    from_name: str = Field(default="", description="Display name; empty for a neutral sender")
    reply_subject: str | None = Field(
        default=None,
        description="Fixed neutral subject for every reply instead of 'Re: <client's subject>'",
    )
    message_id_domain: str = Field(
        default="hotline.invalid", description="Right-hand side of our Message-IDs"
    )
    max_mail_bytes: int = Field(
        default=MAX_STORABLE_MAIL,
        gt=0,
        le=MAX_STORABLE_MAIL,
        description="Larger mail is recorded as quarantined (too_large) and left on the server",
    )
    max_attachment_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=0,
        description="Attachments larger than this are listed on the message but not kept",
    )
    client_key_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="The dispatcher's DISPATCHER_CLIENT_KEY_SECRET: a quarantined mail keeps its "
        "sender's client key, so erasing the person erases it (docs/privacy.md); unset: a "
        "quarantined mail is linked to nobody",
    )
    replay_check_seconds: float = Field(
        default=5,
        gt=0,
        le=3600,
        description="How often replays a supervisor asked for in the console are looked for",
    )
