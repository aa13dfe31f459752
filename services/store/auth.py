"""Consultant log-in, sessions and CSRF.

Passwords are argon2id hashes. A session is a random token in an HttpOnly, SameSite=Strict
cookie; only its SHA-256 is stored, so a database dump holds no usable session. Every
state-changing call must carry the session's CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import secrets
import time
import weakref
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from conversations.repository import Repository
from shared.envelope import utcnow
from shared.http import problem

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


# Roles (PRODUCT.md 2): a consultant, specialist, supervisor and admin each work for one
# organisation and see its work only; a national administrator sees every organisation's work
# on their lines and manages every account. Seeing all is a role, never a missing field: an
# account of another role without an organisation is refused (:func:`may_log_in`).
NATIONAL_ADMIN = "national_admin"
ROLES = ("consultant", "specialist", "supervisor", "admin", NATIONAL_ADMIN)
SUPERVISORS = frozenset({"supervisor", "admin", NATIONAL_ADMIN})
ADMINS = frozenset({"admin", NATIONAL_ADMIN})


def may_log_in(doc: dict[str, Any]) -> bool:
    """An enabled account of a known role that belongs to an organisation (or sees all)."""
    if doc.get("disabled") or doc.get("role") not in ROLES:
        return False
    return doc["role"] == NATIONAL_ADMIN or bool(doc.get("organisation"))


def accounts_of(user: User) -> dict[str, Any]:
    """The database filter of the accounts ``user`` sees and, as an admin, manages: their
    organisation's; every account for a national administrator."""
    return {} if user.organisation is None else {"organisation": user.organisation}


@dataclass(frozen=True)
class User:
    login: str
    name: str
    role: str  # one of ROLES
    # The organisation whose work this person sees; None for a national administrator only.
    organisation: str | None
    lines: list[str]
    # The referral roles a specialist fills (cases referred to them: conversations/cases.py).
    specialist_roles: tuple[str, ...] = ()
    # Routing by skill and language (services/store/skills.py), and a password an
    # administrator set, to be changed at the next log-in (services/store/administration.py).
    skills: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    must_change_password: bool = False

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> User:
        return cls(
            doc["_id"],
            doc.get("name", doc["_id"]),
            doc["role"],
            None if doc["role"] == NATIONAL_ADMIN else doc.get("organisation"),
            list(doc.get("lines", [])),
            tuple(doc.get("specialist_roles") or ()),
            tuple(doc.get("skills") or ()),
            tuple(doc.get("languages") or ()),
            bool(doc.get("must_change_password")),
        )

    def public(self) -> dict[str, Any]:
        return {
            "login": self.login,
            "name": self.name,
            "role": self.role,
            "organisation": self.organisation,
            "lines": self.lines,
            "specialist_roles": list(self.specialist_roles),
            "skills": list(self.skills),
            "languages": list(self.languages),
            "must_change_password": self.must_change_password,
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


def too_many(wait: float) -> web.Response:
    """The answer to a log-in attempt (a password, a code) made while its source must wait
    ``wait`` seconds: the attempt is not even checked."""
    refused = problem(429, "Too many failed log-ins", f"try again in {math.ceil(wait)} seconds")
    refused.headers["Retry-After"] = str(math.ceil(wait))
    return refused


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


# A session that has passed the password but not yet the second factor is pending one of
# these steps (services/store/totp.py): it reaches the step's routes and nothing else.
CODE_STEP = "code"  # the account has a second factor: give a code or a recovery code
ENROL_STEP = "enrol"  # the account must have one (STORE_REQUIRE_TOTP) and has none yet


class Sessions:
    def __init__(self, repo: Repository, hours: float, totp_roles: frozenset[str] = frozenset()) -> None:
        self.repo = repo
        self.lifetime = timedelta(hours=hours)
        self.totp_roles = totp_roles  # roles that must log in with a second factor

    def step_for(self, doc: dict[str, Any]) -> str | None:
        """The second-factor step a log-in of the account ``doc`` waits at, or None."""
        if doc.get("totp"):
            return CODE_STEP
        return ENROL_STEP if doc["role"] in self.totp_roles else None

    async def login(self, login: str, password: str) -> tuple[User, str, str, str | None] | None:
        """(user, session token, csrf token, second-factor step), or None when the credentials
        are wrong. The session waits at the step (:meth:`step_for`), if any, until
        :meth:`complete`."""
        doc = await self.repo.consultant(login)
        if doc is None or not may_log_in(doc):
            verify_password(_DUMMY_HASH, password)
            return None
        if not verify_password(doc["password_hash"], password):
            return None
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        session = {"_id": token_hash(token), "login": doc["_id"], "csrf": csrf}
        step = self.step_for(doc)
        if step is not None:
            session["pending"] = step
        await self.repo.sessions.insert_one({**session, "expires_at": utcnow() + self.lifetime})
        return User.from_doc(doc), token, csrf, step

    async def resolve(self, token: str | None) -> tuple[User, str] | None:
        """(user, csrf token) of a live session that has passed every step, or None."""
        found = await self.resolve_any(token)
        if found is None or found[2] is not None:
            return None
        return found[0], found[1]

    async def resolve_any(self, token: str | None) -> tuple[User, str, str | None] | None:
        """(user, csrf token, pending step or None) of a live session, or None."""
        if not token:
            return None
        session = await self.repo.session(token_hash(token))
        if session is None:
            return None
        doc = await self.repo.consultant(session["login"])
        if doc is None or not may_log_in(doc):
            return None
        return User.from_doc(doc), session["csrf"], session.get("pending")

    async def complete(self, token: str) -> None:
        """The session has passed its second factor: every route is open to it."""
        await self.repo.sessions.update_one({"_id": token_hash(token)}, {"$unset": {"pending": ""}})

    async def logout(self, token: str) -> None:
        await self.repo.delete_session(token_hash(token))


def csrf_ok(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
