"""Consultant log-in, sessions and CSRF.

Passwords are argon2id hashes. A session is a random token in an HttpOnly, SameSite=Strict
cookie; only its SHA-256 is stored, so a database dump holds no usable session. Every
state-changing call must carry the session's CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import weakref
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from conversations.repository import Repository
from shared.envelope import utcnow

COOKIE = "hl_session"
_hasher = PasswordHasher()
# Verifying against this hash for unknown logins keeps the timing the same as for known ones.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    login: str
    name: str
    role: str  # consultant | specialist | supervisor | admin
    organisation: str | None
    lines: list[str]
    # The referral roles a specialist fills (cases referred to them: conversations/cases.py).
    specialist_roles: tuple[str, ...] = ()

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> User:
        return cls(
            doc["_id"],
            doc.get("name", doc["_id"]),
            doc["role"],
            doc.get("organisation"),
            list(doc.get("lines", [])),
            tuple(doc.get("specialist_roles") or ()),
        )

    def public(self) -> dict[str, Any]:
        return {
            "login": self.login,
            "name": self.name,
            "role": self.role,
            "organisation": self.organisation,
            "lines": self.lines,
            "specialist_roles": list(self.specialist_roles),
        }


# Failed log-ins a (login, source) pair may make before each further attempt waits; a source
# may make ten times as many over all logins (an office behind one address mistypes too).
SOURCE_FACTOR = 10
# The wait after the first failure past the free ones, doubled with each further failure, and
# its ceiling: guessing slows to about a hundred tries a day, and nobody is ever locked out.
FIRST_DELAY_SECONDS = 2.0
MAX_DELAY_SECONDS = 900.0
# How often one process deletes expired counters.
PRUNE_EVERY_SECONDS = 60.0
DEVICE_COOKIE = "hl_device"
DEVICE_DAYS = 180


def delay_after(failures: int, free: int) -> float:
    """Seconds the next attempt waits after ``failures`` failures of which ``free`` cost nothing."""
    if failures < free:
        return 0.0
    return min(FIRST_DELAY_SECONDS * 2.0 ** (failures - free), MAX_DELAY_SECONDS)


@dataclass(frozen=True)
class Attempt:
    """One log-in attempt as the throttle sees it: keyed hashes only, never what was typed or
    the address it came from."""

    login_hash: str  # for logs: the same typed login gives the same hash, and nothing else
    counters: tuple[tuple[str, int], ...]  # (counter id, failures free of delay)

    @property
    def pair(self) -> str:
        return self.counters[0][0]


class LoginThrottle:
    """Failed log-ins slow down the source that makes them, never the person they target.

    Counted per (login, source) and per source, never per login alone: five wrong passwords
    for ``vera`` from one place slow that place's next tries for ``vera`` (a growing wait,
    answered 429 with ``Retry-After``, the password not even checked), while Vera herself,
    from anywhere else, logs in at once. A source is

    - the browser, when it holds the device cookie a successful log-in of this very login
      set there (signed with the shared key, so it cannot be made up): her usual browser is
      never slowed by anyone else's failures, even behind a proxy every client shares;
    - else the address the log-in comes from (:func:`shared.peers.client_address`): the TCP
      peer, or, when the peer is one of ``STORE_TRUSTED_PROXIES``, the ``X-Real-IP`` that
      proxy set (the compose proxy sets it on the log-in route and the chat's, never on the
      rest, deploy/proxy/nginx.conf). Any other client can
      write that header, so it is read from a trusted proxy only; ``X-Forwarded-For`` is never
      read. Without a trusted proxy configured, every browser behind a proxy that has no
      device cookie is one source.

    A distributed guesser of one login (many addresses) is slowed per address only: any
    count of a login alone would let anyone delay its owner.

    Counters live in the database (``login_failures``), so every replica sees the same ones,
    under keyed hashes (HMAC-SHA-256, the key in ``keys``), so neither typed logins nor
    addresses are stored. A counter is forgotten ``window`` seconds after its wait ended
    (deleted by the next failure after that, at most once a minute per process), so the
    collection holds only recent failures and no process keeps a table of its own.
    """

    def __init__(self, repo: Repository, free: int, window: float) -> None:
        self.repo = repo
        self.free = free
        self.window = timedelta(seconds=window)
        self._key: bytes | None = None
        self._last_prune = 0.0
        # Concurrent attempts on one pair in this process take turns, so a burst cannot pass
        # the check before the first failure is counted. Weak values: a lock nobody waits on
        # is dropped, so memory follows the requests in flight, not the logins ever tried.
        self._turns: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def _mac(self, *parts: str) -> str:
        if self._key is None:
            self._key = await self.repo.shared_key("login-throttle")
        return hmac.new(self._key, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()[:32]

    async def attempt(self, login: str, peer: str | None, device: str | None) -> Attempt:
        """Who is trying: ``peer`` is the TCP peer address, ``device`` the device cookie."""
        name = login.strip().casefold()
        source = f"addr:{peer or 'unknown'}"
        if device is not None and device.count(".") == 1:
            nonce, mac = device.split(".")
            if hmac.compare_digest(mac, await self._mac("device", name, nonce)):
                source = f"device:{nonce}"
        return Attempt(
            await self._mac("login", name),
            (
                (await self._mac("pair", name, source), self.free),
                (await self._mac("source", source), self.free * SOURCE_FACTOR),
            ),
        )

    def turn(self, attempt: Attempt) -> asyncio.Lock:
        lock = self._turns.get(attempt.pair)
        if lock is None:
            lock = self._turns[attempt.pair] = asyncio.Lock()
        return lock

    async def wait_seconds(self, attempt: Attempt) -> float:
        """How long this attempt must wait before its password is even checked (0: go on)."""
        now = utcnow()
        waits: list[float] = [
            (doc["next_at"] - now).total_seconds()
            for doc in await self.repo.failure_counters([c for c, _ in attempt.counters])
            if doc["expires_at"] > now
        ]
        return max([0.0, *waits])

    async def failed(self, attempt: Attempt) -> None:
        now = utcnow()
        known = {d["_id"]: d for d in await self.repo.failure_counters([c for c, _ in attempt.counters])}
        for counter, free in attempt.counters:
            doc = known.get(counter)
            failures = 1 + (int(doc["failures"]) if doc is not None and doc["expires_at"] > now else 0)
            if doc is not None and doc["expires_at"] <= now:
                await self.repo.forget_login_failures(counter)  # expired: start again from one
            wait = timedelta(seconds=delay_after(failures, free))
            await self.repo.add_login_failure(counter, now + wait, now + wait + self.window)
        if time.monotonic() - self._last_prune > PRUNE_EVERY_SECONDS:
            self._last_prune = time.monotonic()
            await self.repo.prune_login_failures(now)

    async def succeeded(self, attempt: Attempt) -> None:
        """The pair's failures are forgiven; the source's stay (one good password of one's own
        must not reset a spray over other logins)."""
        await self.repo.forget_login_failures(attempt.pair)

    async def device_cookie(self, login: str) -> str:
        """The value of the device cookie a successful log-in of ``login`` sets."""
        nonce = secrets.token_urlsafe(16)
        return f"{nonce}.{await self._mac('device', login.strip().casefold(), nonce)}"


class Sessions:
    def __init__(self, repo: Repository, hours: float) -> None:
        self.repo = repo
        self.lifetime = timedelta(hours=hours)

    async def login(self, login: str, password: str) -> tuple[User, str, str] | None:
        """(user, session token, csrf token), or None when the credentials are wrong."""
        doc = await self.repo.consultant(login)
        if doc is None or doc.get("disabled"):
            verify_password(_DUMMY_HASH, password)
            return None
        if not verify_password(doc["password_hash"], password):
            return None
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        await self.repo.create_session(token_hash(token), login, csrf, utcnow() + self.lifetime)
        return User.from_doc(doc), token, csrf

    async def resolve(self, token: str | None) -> tuple[User, str] | None:
        """(user, csrf token) of a live session, or None."""
        if not token:
            return None
        session = await self.repo.session(token_hash(token))
        if session is None:
            return None
        doc = await self.repo.consultant(session["login"])
        if doc is None or doc.get("disabled"):
            return None
        return User.from_doc(doc), session["csrf"]

    async def logout(self, token: str) -> None:
        await self.repo.delete_session(token_hash(token))


def csrf_ok(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
