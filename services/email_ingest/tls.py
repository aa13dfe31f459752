"""TLS towards the mail servers: certificates are always verified.

An NGO's mail server may have a certificate from a public CA (then the system's CA store
is used) or from a private CA of its own (then the operator names a CA bundle, PEM, and only
the CAs in it are trusted for that server). There is no setting that turns verification
off: a server whose certificate does not verify is refused, and nothing, neither a password
nor a mail, is sent to it.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from shared.config import ConfigError
from shared.logs import get_logger

log = get_logger(__name__)


def client_context(ca_file: Path | None, setting: str) -> ssl.SSLContext:
    """A client context that verifies the server's certificate chain and host name.

    ``ca_file``: a PEM bundle trusted instead of the system's CAs; None for the system's.
    ``setting`` names where the file was configured, for the error. Raises ConfigError when
    the file cannot be read or holds no certificate, so the service refuses to start.
    """
    # create_default_context: CERT_REQUIRED, check_hostname, TLS 1.2 at least (Python >= 3.10).
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    except (OSError, ssl.SSLError) as exc:  # SSLError too for a file with no certificate in it
        raise ConfigError(f"{setting}: cannot load CA bundle {ca_file} ({exc})") from None


def certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error behind ``exc``, if that is what it was.

    aiosmtplib raises it bare during STARTTLS and wrapped in SMTPConnectError for implicit
    TLS; aioimaplib lets it through from the connection. Follows the cause/context chain.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def failure_reason(error: ssl.SSLCertVerificationError) -> str:
    """What OpenSSL said was wrong (e.g. "unable to get local issuer certificate",
    "Hostname mismatch"): about the server's certificate, never about a mail."""
    return str(error.verify_message or error.reason or "certificate verify failed")[:120]


def log_refused(protocol: str, host: str, port: int, error: ssl.SSLCertVerificationError, **ids: str) -> None:
    """Say that a server's certificate was refused (``imap_tls_certificate_refused`` or
    ``smtp_...``), naming the server and OpenSSL's reason, so an operator sees at once that it
    is the certificate or the CA bundle and not the network. ``ids``: the mailbox or message."""
    log.error(
        f"{protocol}_tls_certificate_refused", host=host, port=port, reason=failure_reason(error), **ids
    )
