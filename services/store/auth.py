"""Consultant log-in, sessions and CSRF.

Passwords are argon2id hashes. A session is a random token in an HttpOnly, SameSite=Strict
cookie; only its SHA-256 is stored, so a database dump holds no usable session. Every
state-changing call must carry the session's CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.store.repository import Repository
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
    role: str  # consultant | supervisor | admin
    organisation: str | None
    lines: list[str]

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> User:
        return cls(
            doc["_id"],
            doc.get("name", doc["_id"]),
            doc["role"],
            doc.get("organisation"),
            list(doc.get("lines", [])),
        )

    def public(self) -> dict[str, Any]:
        return {
            "login": self.login,
            "name": self.name,
            "role": self.role,
            "organisation": self.organisation,
            "lines": self.lines,
        }


class LoginThrottle:
    """At most ``attempts`` failed logins per login name within ``window`` seconds."""

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, login: str) -> deque[float]:
        q = self._failures.setdefault(login, deque())
        cutoff = time.monotonic() - self.window
        while q and q[0] < cutoff:
            q.popleft()
        return q

    def blocked(self, login: str) -> bool:
        return len(self._recent(login)) >= self.attempts

    def failed(self, login: str) -> None:
        self._recent(login).append(time.monotonic())
        if len(self._failures) > 100_000:  # bounded memory under a spray of invented names
            self._failures.clear()

    def succeeded(self, login: str) -> None:
        self._failures.pop(login, None)


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
