"""A second factor at log-in (services/store/totp.py), through the real store: enrolment when
the setting requires it, the code step, recovery codes, and the attacker's side: a session
past its password alone reaches nothing but its step; a wrong, replayed or future-but-used
code and a used recovery code are refused; guessing codes is throttled like passwords."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from datetime import timedelta

import aiohttp
import pyotp
import pytest
from playwright.async_api import Browser, Page, expect

from services.store.totp import PENDING_ROUTES
from shared.envelope import utcnow
from tests.conftest import ROOT, Gateway
from tests.integration.email_support import database
from tests.integration.helpers import Consultant

PUBLIC = {("POST", "/api/session"), ("GET", "/api/openapi.json")}


async def password_step(gateway: Gateway, login: str) -> tuple[Consultant, dict[str, object]]:
    """``login`` past the password (demo password): the session, and the log-in's answer."""
    c = Consultant(gateway.store_url)
    answer = await c.login(login, f"{login}-demo")
    return c, answer


async def nothing_but_the_step(gateway: Gateway, c: Consultant) -> list[str]:
    """Every route of the store but the step's, called with the session and its CSRF token:
    what answered anything but 401."""
    status, doc = await c.call("GET", "/api/openapi.json")
    assert status == 200
    wrong = []
    for path, ops in doc["paths"].items():
        for method in ops:
            route = (method.upper(), path)
            if route in PUBLIC or route in PENDING_ROUTES:
                continue
            url = re.sub(r"\{(\w+)\}", lambda m: "113-triage" if m[1] == "queue" else "0" * 32, path)
            status, _ = await c.call(route[0], url, {})
            if status != 401:
                wrong.append(f"{route}: {status}")
    for page in ("/reports", "/reports/yearly"):
        async with c.http.get(gateway.store_url + page) as resp:
            if resp.status != 401:
                wrong.append(f"{page}: {resp.status}")
    try:
        ws = await c.http.ws_connect(f"{gateway.store_url}/api/events")
    except aiohttp.WSServerHandshakeError as refused:
        if refused.status != 401:
            wrong.append(f"events: {refused.status}")
    else:
        await ws.close()
        wrong.append("events: opened")
    return wrong


def code_at(secret: str, step_offset: int = 0) -> str:
    return pyotp.TOTP(secret).at(utcnow() + timedelta(seconds=30 * step_offset))


@pytest.mark.service_env(
    {"STORE_REQUIRE_TOTP": "supervisor,admin,national_admin", "STORE_LOGIN_ATTEMPTS": "3"}
)
async def test_enrol_log_in_with_a_code_and_a_recovery_code_and_the_attackers_side(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    # A consultant's role is not named: she logs in with her password as before.
    anna, answer = await password_step(gateway, "anna")
    assert answer["consultant"]["login"] == "anna" and "second_factor" not in answer
    assert (await anna.call("GET", "/api/queues"))[0] == 200
    await anna.close()

    # A supervisor who has not enrolled: past her password, she must enrol before anything else.
    larisa, answer = await password_step(gateway, "larisa")
    assert answer["second_factor"] == "enrol" and "consultant" not in answer
    assert await nothing_but_the_step(gateway, larisa) == []
    status, state = await larisa.call("GET", "/api/me/totp")
    assert status == 200 and state == {
        "enrolled": False, "required": True, "recovery_codes_left": 0, "pending": "enrol"
    }  # fmt: skip
    assert (await larisa.call("POST", "/api/session/code", {"code": "000000"}))[0] == 409
    status, started = await larisa.call("POST", "/api/me/totp/enrolment")
    assert status == 200
    secret = started["secret"]
    assert (
        started["uri"].startswith("otpauth://totp/Hotline:larisa?") and f"secret={secret}" in started["uri"]
    )
    wrong = "000000" if code_at(secret) != "000000" else "111111"
    status, _ = await larisa.call("POST", "/api/me/totp/enrolment/confirm", {"code": wrong})
    assert status == 401
    assert await nothing_but_the_step(gateway, larisa) == []  # still nothing
    enrol_code = code_at(secret)
    status, enrolled = await larisa.call("POST", "/api/me/totp/enrolment/confirm", {"code": enrol_code})
    assert status == 200, enrolled
    assert enrolled["consultant"]["login"] == "larisa"
    codes = enrolled["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert (await larisa.call("GET", "/api/queues"))[0] == 200
    assert (await larisa.call("POST", "/api/me/totp/enrolment"))[0] == 409  # once enrolled, stays
    await larisa.call("DELETE", "/api/session")
    await larisa.close()

    # Stored: the secret sealed, never in clear; the recovery codes as argon2id hashes.
    client, db = database(gateway)
    try:
        doc = await db["consultants"].find_one({"_id": "larisa"})
    finally:
        await client.close()
    assert doc is not None
    factor = doc["totp"]
    assert secret.encode() not in bytes(factor["secret"]) and secret not in str(doc)
    assert all(h.startswith("$argon2id$") for h in factor["recovery"])
    assert all(c not in str(doc) and c.replace("-", "") not in str(doc) for c in codes)

    # Logging in again asks for a code; the one used to enrol (its step is used) is refused.
    larisa, answer = await password_step(gateway, "larisa")
    assert answer["second_factor"] == "code" and "consultant" not in answer
    assert await nothing_but_the_step(gateway, larisa) == []
    assert (await larisa.call("POST", "/api/session/code", {"code": enrol_code}))[0] == 401
    # The code of the next step (a phone clock a little ahead) opens the session, once.
    next_code = code_at(secret, 1)
    status, body = await larisa.call("POST", "/api/session/code", {"code": next_code})
    assert status == 200 and body["consultant"]["login"] == "larisa", body
    assert (await larisa.call("GET", "/api/supervisor"))[0] == 200
    assert (await larisa.call("POST", "/api/me/totp/enrolment/confirm", {"code": next_code}))[0] == 409
    thief, _ = await password_step(gateway, "larisa")  # who saw that code over her shoulder
    assert (await thief.call("POST", "/api/session/code", {"code": next_code}))[0] == 401
    assert (await thief.call("GET", "/api/threads"))[0] == 401
    await thief.close()
    await larisa.close()

    # A recovery code opens one log-in, once; typed with spaces or capitals all the same.
    larisa, _ = await password_step(gateway, "larisa")
    status, body = await larisa.call("POST", "/api/session/code", {"recovery_code": codes[0].upper()})
    assert status == 200 and body["recovery_codes_left"] == 9, body
    await larisa.close()
    larisa, _ = await password_step(gateway, "larisa")
    assert (await larisa.call("POST", "/api/session/code", {"recovery_code": codes[0]}))[0] == 401
    # Guessing is throttled as passwords are: past STORE_LOGIN_ATTEMPTS (3) failures from this
    # source, even the right code waits (429) and is not checked.
    for guess in ("123456", "654321"):
        assert (await larisa.call("POST", "/api/session/code", {"code": guess}))[0] == 401
    status, refused = await larisa.call("POST", "/api/session/code", {"code": code_at(secret, -1)})
    assert status == 429 and refused["title"] == "Too many failed log-ins"
    assert await nothing_but_the_step(gateway, larisa) == []
    await larisa.close()


@pytest.mark.service_env({"STORE_REQUIRE_TOTP": "all"})
async def test_an_operator_resets_a_lost_factor_and_two_uses_of_one_recovery_code_open_one_session(
    gateway: Gateway,
) -> None:
    gateway.seed_demo_accounts()
    anna, answer = await password_step(gateway, "anna")
    assert answer["second_factor"] == "enrol"  # every role: a consultant too
    secret = (await anna.call("POST", "/api/me/totp/enrolment"))[1]["secret"]
    status, enrolled = await anna.call("POST", "/api/me/totp/enrolment/confirm", {"code": code_at(secret)})
    assert status == 200
    code = enrolled["recovery_codes"][1]
    # The same recovery code sent at once from two browsers: exactly one session opens.
    a, _ = await password_step(gateway, "anna")
    b, _ = await password_step(gateway, "anna")
    results = await asyncio.gather(
        a.call("POST", "/api/session/code", {"recovery_code": code}),
        b.call("POST", "/api/session/code", {"recovery_code": code}),
    )
    assert sorted(s for s, _ in results) == [200, 401]
    await a.close()
    await b.close()

    # Her phone is lost: the operator resets the factor; her sessions end at once, and her
    # next log-in enrols again.
    assert (await anna.call("GET", "/api/queues"))[0] == 200
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.store.admin", "reset-totp", "--login=anna"],
        cwd=ROOT,
        text=True,
        capture_output=True,
        env={**os.environ, **gateway.env["store"]},
    )
    assert done.returncode == 0, done.stderr
    assert (await anna.call("GET", "/api/queues"))[0] == 401
    await anna.close()
    anna, answer = await password_step(gateway, "anna")
    assert answer["second_factor"] == "enrol"
    assert (await anna.call("POST", "/api/session/code", {"code": code_at(secret, 1)}))[0] == 409
    await anna.close()


async def log_out(page: Page) -> None:
    """Log out, and wait for the page the console reloads to show the log-in form: going
    elsewhere before that reload ends would be cut off by it."""
    await page.get_by_role("button", name="Log out").click()
    await expect(page.locator("#login-form")).to_be_visible()


@pytest.mark.service_env({"STORE_REQUIRE_TOTP": "national_admin"})
async def test_in_chromium_sofia_enrols_then_logs_in_with_a_code_and_with_a_recovery_code(
    gateway: Gateway, browser: Browser
) -> None:
    gateway.seed_demo_accounts()
    page = await browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    # Failed requests are told apart by their answers (below): the wrong codes' 401s are meant.
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    # The wrong codes, the console asking who is logged in as it loads (nobody), no icon.
    meant = ("/api/session/code", "/api/me/totp/enrolment/confirm", "/api/me", "/favicon.ico")
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.url}") if r.status >= 400 and not r.url.endswith(meant) else None
        ),
    )
    page.on("dialog", lambda d: problems.append(d.message))
    page.on("request", lambda r: None if r.url.startswith(gateway.store_url) else problems.append(r.url))

    async def password() -> None:
        await page.goto(gateway.store_url + "/")
        await page.get_by_label("Login").fill("sofia")
        await page.get_by_label("Password").fill("sofia-demo")
        await page.get_by_role("button", name="Log in").click()

    # Enrolment: the key and its link, a code from it, the recovery codes shown once.
    await password()
    await expect(page.locator("#second-factor-title")).to_have_text("Set up your second factor")
    await expect(page.locator("#app")).to_be_hidden()
    secret_text = page.locator("#totp-secret")
    await expect(secret_text).to_have_text(re.compile(r"^[A-Z2-7 ]{32,}$"))
    secret = (await secret_text.text_content() or "").replace(" ", "")
    assert await page.locator("#totp-uri").get_attribute("href") == (
        f"otpauth://totp/Hotline:sofia?secret={secret}&issuer=Hotline"
    )
    wrong = "000000" if code_at(secret) != "000000" else "111111"
    await page.locator("#totp-enrol-form").get_by_label("Code").fill(wrong)
    await page.get_by_role("button", name="Confirm the code").click()
    await expect(page.locator("#totp-enrol-form [role=alert]")).to_have_text("Wrong code")
    await page.locator("#totp-enrol-form").get_by_label("Code").fill(code_at(secret))
    await page.get_by_role("button", name="Confirm the code").click()
    codes = page.locator("#totp-recovery-codes li")
    await expect(codes).to_have_count(10)
    recovery = await codes.all_text_contents()
    await page.get_by_role("button", name="I have saved them: continue").click()
    await expect(page.locator("#who")).to_have_text("Sofia (national_admin)")
    await expect(page.locator("#totp-recovery-codes")).to_have_count(0)  # gone from the page
    await expect(page.locator("#live")).to_have_class("on")
    await log_out(page)

    # Logging in again: the password, then the code (the next step's: the one used to enrol
    # is spent).
    await password()
    await expect(page.locator("#second-factor-title")).to_have_text("Second factor")
    await expect(page.locator("#app")).to_be_hidden()
    await page.locator("#totp-code-form").get_by_label("Code").fill(code_at(secret, 1))
    await page.locator("#totp-code-form").get_by_role("button", name="Continue").click()
    await expect(page.locator("#who")).to_have_text("Sofia (national_admin)")
    await log_out(page)

    # A recovery code instead of the phone: it opens this log-in and says how many are left.
    await password()
    await page.get_by_label("Recovery code").fill(recovery[3])
    await page.get_by_role("button", name="Use the recovery code").click()
    await expect(page.locator("#totp-codes-left")).to_contain_text("Recovery codes left: 9")
    await page.locator("#totp-go-on").click()
    await expect(page.locator("#who")).to_have_text("Sofia (national_admin)")
    await log_out(page)
    # The same recovery code again: refused, and the console stays closed.
    await password()
    await page.get_by_label("Recovery code").fill(recovery[3])
    await page.get_by_role("button", name="Use the recovery code").click()
    await expect(page.locator("#totp-recovery-form [role=alert]")).to_have_text("Wrong code")
    await expect(page.locator("#app")).to_be_hidden()
    assert problems == []
    await page.close()

    # Anna's role is not required to have one: she logs in with her password, and may enrol of
    # her own accord from the header; from then on her log-in asks for the code.
    page = await browser.new_page()
    await page.goto(gateway.store_url + "/")
    await page.get_by_label("Login").fill("anna")
    await page.get_by_label("Password").fill("anna-demo")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#who")).to_have_text("Anna (consultant)")
    await page.get_by_role("button", name="Set up a second factor").click()
    dialog = page.locator("#totp-dialog")
    await expect(dialog.locator("#second-factor-title")).to_have_text("A second factor for your log-in")
    await expect(dialog.locator("#totp-secret")).to_have_text(re.compile(r"^[A-Z2-7 ]{32,}$"))
    own = (await dialog.locator("#totp-secret").text_content() or "").replace(" ", "")
    await dialog.get_by_label("Code").fill(code_at(own))
    await dialog.get_by_role("button", name="Confirm the code").click()
    await expect(dialog.locator("#totp-recovery-codes li")).to_have_count(10)
    await dialog.get_by_role("button", name="I have saved them: continue").click()
    await expect(page.locator("#totp-dialog")).to_have_count(0)
    await expect(page.get_by_role("button", name="Set up a second factor")).to_have_count(0)
    await log_out(page)
    await page.get_by_label("Login").fill("anna")
    await page.get_by_label("Password").fill("anna-demo")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#second-factor-title")).to_have_text("Second factor")
    await page.locator("#totp-code-form").get_by_label("Code").fill(code_at(own, 1))
    await page.locator("#totp-code-form").get_by_role("button", name="Continue").click()
    await expect(page.locator("#who")).to_have_text("Anna (consultant)")
    await page.close()
