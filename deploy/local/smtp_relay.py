"""SMTP server of the local stack: accepts mail for any recipient and hands it to Dovecot over LMTP.

Run by ``deploy/local/stack.py`` as ``python -m deploy.local.smtp_relay --port N --lmtp-port M``; it is
what services and tests talk to when they "send an e-mail" in the demo and in the suite.

Delivery contract: the SMTP client gets ``250`` only after Dovecot has answered ``250`` for every
recipient, so a mail is never accepted and then lost. Otherwise the client gets the LMTP status (4xx
stays temporary, 5xx permanent), or ``451`` when Dovecot cannot be reached. If some recipients were
delivered and others failed, the whole message is answered ``451``: SMTP has only one reply per
message (RFC 5321 §4.2.5), and a retry that duplicates a mail is better than a mail dropped silently.

Mail content is never logged, only counts, sizes and status codes.

Given ``--authserv-id`` and ``--dkim-keys``, the relay also plays the hotline's receiving mail
server (docs/email.md, "Authenticated threading"): it verifies each mail's DKIM signatures
(RFC 6376, with the dkimpy library) against the public keys of the file in place of DNS, deletes
the ``Authentication-Results`` fields that came in with the mail under its own authserv-id
(RFC 8601 section 5: a forgery), and writes its own on top, so the intake reads what a real
receiving server would have written. The tests of authenticated threading send through it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import re
import signal
import smtplib
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

import authres
import dkim
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger("smtp_relay")

# SMTP MAIL FROM parameters that we may pass on, and the LMTP extension each one needs.
_PASSABLE_MAIL_OPTIONS = {"BODY": "8bitmime", "SMTPUTF8": "smtputf8"}


@dataclass
class DeliveryResult:
    """LMTP outcome of one message: the reply per recipient (RFC 2033 §4.2)."""

    replies: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def delivered(self) -> list[str]:
        return [rcpt for rcpt, (code, _) in self.replies.items() if 200 <= code < 300]

    @property
    def failed(self) -> dict[str, tuple[int, str]]:
        return {r: reply for r, reply in self.replies.items() if not 200 <= reply[0] < 300}


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def deliver_lmtp(
    host: str,
    port: int,
    mail_from: str,
    rcpts: list[str],
    content: bytes,
    mail_options: list[str],
    timeout: float,
) -> DeliveryResult:
    """Deliver one message over LMTP, unchanged; blocking (the relay calls it in a worker thread).

    Raises OSError / smtplib.SMTPException when the LMTP session itself fails.
    """
    result = DeliveryResult()
    with smtplib.LMTP(host, port, timeout=timeout) as lmtp:
        lmtp.ehlo_or_helo_if_needed()  # LHLO
        options = [
            opt
            for opt in mail_options
            if lmtp.has_extn(_PASSABLE_MAIL_OPTIONS.get(opt.split("=", 1)[0].upper(), "-"))
        ]
        code, reply = lmtp.mail(mail_from, options)
        if code != 250:
            for rcpt in rcpts:
                result.replies[rcpt] = (code, _text(reply))
            return result
        accepted: list[str] = []
        for rcpt in rcpts:
            code, reply = lmtp.rcpt(rcpt)
            if code in (250, 251):
                accepted.append(rcpt)
            else:
                result.replies[rcpt] = (code, _text(reply))
        if not accepted:
            return result
        # smtplib.LMTP reads only the first reply after DATA; LMTP sends one per accepted recipient,
        # in RCPT order (RFC 2033 §4.2), so the remaining ones are read here. smtplib.data() also
        # does the dot-stuffing; bytes are otherwise sent as they are.
        code, reply = lmtp.data(content)
        result.replies[accepted[0]] = (code, _text(reply))
        for rcpt in accepted[1:]:
            code, reply = lmtp.getreply()
            result.replies[rcpt] = (code, _text(reply))
    return result


# At most this many signatures of one mail are verified (each costs a key lookup and a hash).
MAX_SIGNATURES = 5
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_START = re.compile(rb"^[^ \t\r\n]", re.MULTILINE)


@dataclass(frozen=True)
class ReceivingChecks:
    """What the relay checks as the receiving server: DKIM, against ``keys`` (the TXT record
    of each ``<selector>._domainkey.<domain>.``, as DNS would give it)."""

    authserv_id: str
    keys: Mapping[bytes, bytes]

    @classmethod
    def from_file(cls, authserv_id: str, path: Path) -> ReceivingChecks:
        table = json.loads(path.read_text(encoding="utf-8"))
        return cls(authserv_id, {_fqdn(name): txt.encode("ascii") for name, txt in table.items()})

    def _txt(self, name: bytes, timeout: int = 5) -> bytes | None:
        return self.keys.get(_fqdn(name.decode("ascii", "replace")))

    def dkim_results(self, content: bytes) -> list[authres.AuthenticationResult]:
        """One result per DKIM signature (``none`` when there is none)."""
        head = BytesHeaderParser(policy=compat32).parsebytes(content, headersonly=True)
        count = min(len(head.get_all("DKIM-Signature") or []), MAX_SIGNATURES)
        if not count:
            return [authres.DKIMAuthenticationResult(result="none")]
        results: list[authres.AuthenticationResult] = []
        for idx in range(count):
            checker = dkim.DKIM(content)
            try:
                passed = bool(checker.verify(idx=idx, dnsfunc=self._txt))
            except dkim.DKIMException:
                passed = False
            domain = (checker.domain or b"").decode("ascii", "replace") or None
            selector = (checker.selector or b"").decode("ascii", "replace") or None
            results.append(
                authres.DKIMAuthenticationResult(
                    result="pass" if passed else "fail", header_d=domain, header_s=selector
                )
            )
        return results

    def stamp(self, content: bytes) -> bytes:
        """``content`` as the mailbox should get it: the incoming fields under our authserv-id
        deleted, our results on top."""
        results = self.dkim_results(content)
        field = authres.AuthenticationResultsHeader(authserv_id=self.authserv_id, results=results)
        end = _HEADER_END.search(content)
        head, body = (content[: end.start()], content[end.start() :]) if end else (content, b"")
        starts = [m.start() for m in _FIELD_START.finditer(head)] + [len(head)]
        kept = [head[a:b] for a, b in itertools.pairwise(starts) if not self._ours(head[a:b])]
        return str(field).encode("ascii") + b"\r\n" + b"".join(kept) + body

    def _ours(self, raw_field: bytes) -> bool:
        name, _, value = raw_field.partition(b":")
        if name.strip().lower() != b"authentication-results":
            return False
        text = re.sub(rb"\([^()]*\)", b" ", value).decode("ascii", "replace")
        first = re.split(r"[\s;]+", text.strip(), maxsplit=1)[0]
        return first.casefold() == self.authserv_id.casefold()


def _fqdn(name: str) -> bytes:
    return (name.strip().rstrip(".").lower() + ".").encode("ascii")


def smtp_reply(result: DeliveryResult) -> str:
    """The one SMTP reply for a message, from the per-recipient LMTP replies."""
    failed = result.failed
    if not failed:
        return f"250 2.0.0 Delivered to {len(result.delivered)} mailbox(es)"
    if result.delivered:
        return "451 4.3.0 Delivered to some recipients only; retry the message"
    codes = [code for code, _ in failed.values()]
    # Temporary wins over permanent: the client retries, and the permanent failure shows up then.
    code, text = next(
        (reply for reply in failed.values() if 400 <= reply[0] < 500),
        next(iter(failed.values())),
    )
    if not 400 <= code < 600:  # a protocol oddity must not turn into an acceptance
        return f"451 4.3.0 Unexpected LMTP status {codes}"
    return f"{code} {text}"


class LmtpRelay:
    """aiosmtpd handler: every message goes to Dovecot's LMTP listener before we answer."""

    def __init__(
        self, lmtp_host: str, lmtp_port: int, timeout: float = 60.0, checks: ReceivingChecks | None = None
    ) -> None:
        self.lmtp_host = lmtp_host
        self.lmtp_port = lmtp_port
        self.timeout = timeout
        self.checks = checks

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if self.checks is not None:
            content = await asyncio.to_thread(self.checks.stamp, content)
        rcpts = list(envelope.rcpt_tos)
        try:
            result = await asyncio.to_thread(
                deliver_lmtp,
                self.lmtp_host,
                self.lmtp_port,
                envelope.mail_from or "",
                rcpts,
                content,
                list(envelope.mail_options),
                self.timeout,
            )
        except (OSError, smtplib.SMTPException) as exc:
            log.warning(
                "not delivered: LMTP session failed (%s) rcpts=%d bytes=%d",
                type(exc).__name__,
                len(rcpts),
                len(content),
            )
            return "451 4.4.1 Mailbox server unavailable, try again later"
        reply = smtp_reply(result)
        log.info(
            "%s rcpts=%d delivered=%d bytes=%d reply=%s",
            "delivered" if reply.startswith("250") else "rejected",
            len(rcpts),
            len(result.delivered),
            len(content),
            reply[:3],
        )
        return reply


async def listen(host: str, port: int, handler: LmtpRelay) -> asyncio.Server:
    """The relay's SMTP listener on ``host:port`` (0: any free port)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="relay.demo.test",
            ident="hotline-gateway local SMTP relay",
            enable_SMTPUTF8=True,
        ),
        host=host,
        port=port,
    )


async def serve(
    host: str, port: int, lmtp_host: str, lmtp_port: int, checks: ReceivingChecks | None = None
) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await listen(host, port, LmtpRelay(lmtp_host, lmtp_port, checks=checks))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("listening on %s:%d, delivering to LMTP %s:%d", host, port, lmtp_host, lmtp_port)
    async with server:
        await stop.wait()
    log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lmtp-host", default="127.0.0.1")
    parser.add_argument("--lmtp-port", type=int, required=True)
    parser.add_argument("--log-file", help="append the log here instead of stderr")
    parser.add_argument("--authserv-id", help="check DKIM as the receiving server named so")
    parser.add_argument(
        "--dkim-keys", type=Path, help="JSON: {'<selector>._domainkey.<domain>': '<TXT record>'}"
    )
    args = parser.parse_args(argv)
    if bool(args.authserv_id) != bool(args.dkim_keys):
        parser.error("--authserv-id and --dkim-keys go together")
    checks = ReceivingChecks.from_file(args.authserv_id, args.dkim_keys) if args.authserv_id else None
    logging.basicConfig(
        filename=args.log_file,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiosmtpd logs envelope addresses at INFO and message lines at DEBUG; keep both out of the log.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    asyncio.run(serve(args.host, args.port, args.lmtp_host, args.lmtp_port, checks))


if __name__ == "__main__":
    main()
