"""A second factor at log-in: time-based one-time codes (TOTP, RFC 6238, with pyotp).

An account enrols in the console: the store makes a secret, shows it once with its
``otpauth://`` address (any authenticator app takes either), and keeps it only when a code
made from it comes back. Then it makes ten recovery codes, shows them once and keeps their
argon2id hashes, as passwords are kept; each opens one log-in, once.

At log-in, after the password, a session of an enrolled account waits at the code step; an
account whose role ``STORE_REQUIRE_TOTP`` names and that has not enrolled waits at the
enrolment step instead (:class:`services.store.auth.Sessions`). A waiting session reaches the
routes of its step (:data:`PENDING_ROUTES`) and log-out, and every other route answers 401,
the live events socket and the report pages too.

- Codes are checked against the current 30-second step and the one before and after (clocks
  drift); a code of a step that was already used, or of a step before it, is refused, so a
  code seen over a shoulder cannot be used again within its window. Each use is a unique
  insert (``totp_used``), exact under concurrency on MongoDB and on the local stand-in.
- Wrong codes count as failed log-ins of the account from that source
  (:class:`services.store.auth.LoginThrottle`): guessing a code slows down as guessing a
  password does, the code not even checked while the source waits.
- The secret is sealed with the master key (AES-GCM, bound to the account), never stored in
  clear: a database dump alone gives no codes.
- A lost factor is reset by an operator (``python -m services.store.admin reset-totp``),
  which ends the account's sessions; the next log-in enrols again where it is required.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import Any, cast

import pyotp
from aiohttp import web
from pymongo.errors import DuplicateKeyError

from services.store.auth import (
    COOKIE,
    ENROL_STEP,
    ROLES,
    User,
    hash_password,
    too_many,
    verify_password,
)
from shared.envelope import utcnow
from shared.http import problem
from shared.logs import get_logger
from shared.transit import TransitError, TransitSeal

log = get_logger(__name__)

ISSUER = "Hotline"
RECOVERY_CODES = 10
# Steps either side of now a code may belong to (30 s each): a phone's clock a little off.
DRIFT_STEPS = 1
# Routes a session waiting at a second-factor step may call: the steps, and log-out.
PENDING_ROUTES = {
    ("POST", "/api/session/code"),
    ("GET", "/api/me/totp"),
    ("POST", "/api/me/totp/enrolment"),
    ("POST", "/api/me/totp/enrolment/confirm"),
    ("DELETE", "/api/session"),
}
# Used codes older than this are forgotten (they are refused anyway: older than the last step).
FORGET_USED_AFTER = timedelta(hours=1)


def required_roles(setting: str) -> frozenset[str]:
    """The roles ``STORE_REQUIRE_TOTP`` names: ``all``, or a comma-separated list of roles."""
    names = {n.strip() for n in setting.split(",") if n.strip()}
    if "all" in names:
        return frozenset(ROLES)
    unknown = names - set(ROLES)
    if unknown:
        raise ValueError(f"STORE_REQUIRE_TOTP names no such role: {', '.join(sorted(unknown))}")
    return frozenset(names)


def recovery_code() -> str:
    """Ten characters of an alphabet without look-alikes, written as two groups of five."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def _normal_recovery(code: str) -> str:
    return code.strip().lower().replace(" ", "").replace("-", "")


class TotpRoutes:
    def __init__(self, api: Any, seal: TransitSeal) -> None:
        """``seal``: the store's transit seal (shared/transit.py), which seals each key under
        the master key's (or, with a KMIP server, the key vault's) transit key."""
        self.api = api
        self.repo = api.repo
        self.throttle = api.throttle
        self.sessions = api.sessions
        self.seal = seal
        self.used = api.repo.db["totp_used"]

    # --- the secret -----------------------------------------------------------------------------

    def _sealed(self, login: str, secret: str) -> bytes:
        return self.seal.seal(secret.encode(), f"totp:{login}")

    def _opened(self, login: str, sealed: bytes) -> str:
        return self.seal.open(bytes(sealed), f"totp:{login}").decode()

    async def _step_of(self, login: str, secret: str, code: str, last: int) -> int | None:
        """The time step ``code`` belongs to, if it is right, newer than ``last`` and not used
        before (recorded here as used); else None."""
        code = code.strip().replace(" ", "")
        if not (len(code) == 6 and code.isdigit()):
            return None
        totp = pyotp.TOTP(secret)
        now = utcnow()
        current = totp.timecode(now)
        for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
            if step <= last or not secrets.compare_digest(totp.generate_otp(step), code):
                continue
            try:
                await self.used.insert_one({"_id": f"{login}:{step}", "kind": "step", "at": now})
            except DuplicateKeyError:
                return None  # this very code, used a moment ago (a replay, or a double send)
            await self.used.delete_many({"kind": "step", "at": {"$lt": now - FORGET_USED_AFTER}})
            return step
        return None

    # --- plumbing ---------------------------------------------------------------------------------

    def _pending(self, request: web.Request) -> str | None:
        return cast("str | None", request.get("pending"))

    async def _throttled(self, request: web.Request, user: User, check: Any) -> web.Response | None:
        """Runs ``check()`` (True: the code was right) under the log-in throttle of ``user``'s
        login and this source; answers 429 while waiting, 401 for a wrong code, None when right."""
        attempt = await self.api.attempt_of(request, user.login)
        async with self.throttle.turn(attempt):
            wait = await self.throttle.wait_seconds(attempt)
            if wait > 0:
                log.info("second_factor_throttled", consultant=user.login, wait_seconds=round(wait, 1))
                return too_many(wait)
            if not await check():
                await self.throttle.failed(attempt)
                log.info("second_factor_failed", consultant=user.login)
                return problem(401, "Wrong code")
            await self.throttle.succeeded(attempt)
        return None

    async def _logged_in(self, request: web.Request, user: User, **extra: Any) -> web.Response:
        """The session passed its second factor: the answer a log-in gives."""
        await self.sessions.complete(request.cookies.get(COOKIE, ""))
        log.info("second_factor_passed", consultant=user.login)
        await self.api.shift.logged_in(user.login)  # now logged in: available (shift.py)
        return web.json_response({"consultant": user.public(), "csrf_token": request["csrf"], **extra})

    # --- routes -----------------------------------------------------------------------------------

    async def code(self, request: web.Request) -> web.Response:
        """The code step of a log-in: a code from the authenticator, or a recovery code."""
        user: User = request["user"]
        if self._pending(request) != "code":
            return problem(409, "This session is not waiting for a code")
        body = await self.api.json_body(request)
        code, recovery = body.get("code"), body.get("recovery_code")
        if not isinstance(code, str) and not isinstance(recovery, str):
            return problem(422, "code or recovery_code is required", missing=["code"])
        doc = await self.repo.consultant(user.login) or {}
        factor = doc.get("totp") or {}
        used_recovery: list[str] = []

        async def check() -> bool:
            if isinstance(code, str) and len(code) <= 16:
                try:
                    secret = self._opened(user.login, factor["secret"])
                except (KeyError, TransitError):
                    return False
                step = await self._step_of(user.login, secret, code, int(factor.get("last_step", -1)))
                if step is None:
                    return False
                await self.repo.consultants.update_one(
                    {"_id": user.login}, {"$max": {"totp.last_step": step}}
                )
                return True
            if isinstance(recovery, str) and len(recovery) <= 32:
                typed = _normal_recovery(recovery)
                for stored in factor.get("recovery", []):
                    # argon2 takes a while: off the event loop, as the store answers meanwhile
                    if await asyncio.to_thread(verify_password, stored, typed):
                        try:  # each code opens one log-in: the first use wins, exactly
                            mark = f"{user.login}:recovery:{stored}"
                            await self.used.insert_one({"_id": mark, "kind": "recovery", "at": utcnow()})
                        except DuplicateKeyError:
                            return False
                        await self.repo.consultants.update_one(
                            {"_id": user.login}, {"$pull": {"totp.recovery": stored}}
                        )
                        used_recovery.append(stored)
                        return True
            return False

        refused = await self._throttled(request, user, check)
        if refused is not None:
            return refused
        if used_recovery:
            left = len(factor.get("recovery", [])) - 1
            log.info("recovery_code_used", consultant=user.login, left=left)
            return await self._logged_in(request, user, recovery_codes_left=left)
        return await self._logged_in(request, user)

    async def status(self, request: web.Request) -> web.Response:
        """Whether the account has a second factor, must have one, and recovery codes left."""
        user: User = request["user"]
        doc = await self.repo.consultant(user.login) or {}
        factor = doc.get("totp") or {}
        return web.json_response(
            {
                "enrolled": bool(factor),
                "required": user.role in self.sessions.totp_roles,
                "recovery_codes_left": len(factor.get("recovery", [])),
                "pending": self._pending(request),
            }
        )

    async def enrol(self, request: web.Request) -> web.Response:
        """A new secret to enrol with, shown once; it counts once a code made from it comes back."""
        user: User = request["user"]
        if self._pending(request) not in (None, ENROL_STEP):
            return problem(409, "Give the code of your second factor first")
        doc = await self.repo.consultant(user.login) or {}
        if doc.get("totp"):
            return problem(409, "A second factor is already enrolled", "an operator can reset it")
        secret = pyotp.random_base32()
        await self.repo.consultants.update_one(
            {"_id": user.login},
            {"$set": {"totp_enrolling": {"secret": self._sealed(user.login, secret), "at": utcnow()}}},
        )
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.login, issuer_name=ISSUER)
        log.info("second_factor_enrolment_started", consultant=user.login)
        return web.json_response({"secret": secret, "uri": uri})

    async def confirm(self, request: web.Request) -> web.Response:
        """A code from the new secret: the second factor is enrolled and the recovery codes are
        answered, this once."""
        user: User = request["user"]
        if self._pending(request) not in (None, ENROL_STEP):
            return problem(409, "Give the code of your second factor first")
        code = (await self.api.json_body(request)).get("code")
        if not isinstance(code, str) or len(code) > 16:
            return problem(422, "code is required", missing=["code"])
        doc = await self.repo.consultant(user.login) or {}
        if doc.get("totp"):
            return problem(409, "A second factor is already enrolled", "an operator can reset it")
        enrolling = doc.get("totp_enrolling")
        if not isinstance(enrolling, dict):
            return problem(409, "Start the enrolment first")
        secret = self._opened(user.login, enrolling["secret"])
        steps: list[int] = []

        async def check() -> bool:
            step = await self._step_of(user.login, secret, code, -1)
            if step is not None:
                steps.append(step)
            return step is not None

        refused = await self._throttled(request, user, check)
        if refused is not None:
            return refused
        codes = [recovery_code() for _ in range(RECOVERY_CODES)]
        factor = {
            "secret": enrolling["secret"],
            "enrolled_at": utcnow(),
            "last_step": steps[0],
            "recovery": await asyncio.to_thread(lambda: [hash_password(_normal_recovery(c)) for c in codes]),
        }
        await self.repo.consultants.update_one(
            {"_id": user.login}, {"$set": {"totp": factor}, "$unset": {"totp_enrolling": ""}}
        )
        log.info("second_factor_enrolled", consultant=user.login)
        return await self._logged_in(request, user, recovery_codes=codes)

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/session/code", self.code)
        r.add_get("/api/me/totp", self.status)
        r.add_post("/api/me/totp/enrolment", self.enrol)
        r.add_post("/api/me/totp/enrolment/confirm", self.confirm)
