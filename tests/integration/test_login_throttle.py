"""Log-in throttling as an attacker tries it (issue 15): hammering one consultant's login
from one place slows that place with growing waits and never locks the consultant out; two
store replicas count the same failures; the database keeps keyed hashes only, and forgets
them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest

from conversations.repository import Repository
from deploy.local.stack import LocalStack
from services.store.auth import LoginThrottle
from shared.envelope import utcnow
from shared.mongo import make_client
from tests.conftest import Gateway
from tests.integration.test_sockets_end_with_session import second_store

ATTACKER = "127.0.0.2"  # another loopback address: a second source without any proxy header


def session_from(address: str | None = None) -> aiohttp.ClientSession:
    """A client whose connections leave from ``address`` (default: 127.0.0.1)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0)) if address else aiohttp.TCPConnector()
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True))


async def try_login(
    http: aiohttp.ClientSession, url: str, login: str, password: str, real_ip: str | None = None
) -> tuple[int, dict]:
    headers = {"X-Real-IP": real_ip} if real_ip is not None else {}
    async with http.post(
        f"{url}/api/session", json={"login": login, "password": password}, headers=headers
    ) as resp:
        body = await resp.json(content_type=None)
        return resp.status, {**body, "retry_after": resp.headers.get("Retry-After")}


@pytest.fixture
async def attacker() -> AsyncIterator[aiohttp.ClientSession]:
    async with session_from(ATTACKER) as http:
        yield http


@pytest.mark.service_env({"STORE_LOGIN_ATTEMPTS": "3"})
async def test_hammering_vera_slows_the_attacker_and_never_locks_vera_out(
    gateway: Gateway, attacker: aiohttp.ClientSession
) -> None:
    gateway.seed_demo_accounts()
    url = gateway.store_url
    # A second store replica on the same database: it must count the same failures.
    url_b = await asyncio.to_thread(second_store, gateway)

    # Three wrong passwords are answered like any wrong password...
    for _ in range(3):
        assert (await try_login(attacker, url, "vera", "guess"))[0] == 401
    # ...then the attacker waits, even with the right password, and on the other replica too.
    status, body = await try_login(attacker, url, "vera", "vera-demo")
    assert status == 429 and body["title"] == "Too many failed log-ins", body
    assert int(body["retry_after"]) >= 1
    first_wait = int(body["retry_after"])
    status, body = await try_login(attacker, url_b, "vera", "vera-demo")
    assert status == 429 and int(body["retry_after"]) >= 1

    # Vera, from her own place, logs in at once on either replica.
    async with session_from() as vera:
        assert (await try_login(vera, url, "vera", "vera-demo"))[0] == 200
        assert (await try_login(vera, url_b, "vera", "vera-demo"))[0] == 200

    # The wait grows: past it, one more wrong guess buys a longer one.
    await asyncio.sleep(first_wait)  # a deadline, not an event: nothing to await but time
    assert (await try_login(attacker, url_b, "vera", "guess"))[0] == 401
    status, body = await try_login(attacker, url, "vera", "guess")
    assert status == 429 and int(body["retry_after"]) > first_wait

    # What the database keeps names neither the login as typed nor the address.
    client = make_client(gateway.urls.mongo_url)
    try:
        counters = [d async for d in client[gateway.database]["login_failures"].find()]
    finally:
        await client.close()
    assert counters and all(d["failures"] >= 1 for d in counters)
    stored = repr(counters)
    assert "vera" not in stored and ATTACKER not in stored and "127.0.0.1" not in stored


@pytest.mark.service_env({"STORE_LOGIN_ATTEMPTS": "2", "STORE_TRUSTED_PROXIES": "127.0.0.1/32"})
async def test_behind_a_trusted_proxy_each_client_address_is_a_source_and_no_one_else_can_claim_one(
    gateway: Gateway,
) -> None:
    """Every client reaches the store through the proxy (127.0.0.1 here), which names the
    client's address in X-Real-IP: an attacker hammering Vera's login slows their own address,
    not Vera logging in from a browser she never used. A client that is not the proxy
    (127.0.0.2) cannot escape its own counter by writing made-up addresses into that header."""
    gateway.seed_demo_accounts()
    url = gateway.store_url
    attacker_address, vera_address = "203.0.113.9", "198.51.100.7"
    async with session_from() as proxy_for_attacker, session_from() as proxy_for_vera:
        for _ in range(2):
            assert (await try_login(proxy_for_attacker, url, "vera", "guess", attacker_address))[0] == 401
        status, _ = await try_login(proxy_for_attacker, url, "vera", "vera-demo", attacker_address)
        assert status == 429
        # A new browser (no device cookie) at another address logs in at once.
        assert (await try_login(proxy_for_vera, url, "vera", "vera-demo", vera_address))[0] == 200

    async with session_from(ATTACKER) as direct:
        for n in range(2):
            assert (await try_login(direct, url, "anna", "guess", f"192.0.2.{n}"))[0] == 401
        status, _ = await try_login(direct, url, "anna", "anna-demo", "192.0.2.99")
        assert status == 429, "a client that is not a trusted proxy chose its own source"

    client = make_client(gateway.urls.mongo_url)
    try:
        stored = repr([d async for d in client[gateway.database]["login_failures"].find()])
    finally:
        await client.close()
    assert attacker_address not in stored and "192.0.2." not in stored
    logs = gateway.logs()
    assert "login_failed" in logs and attacker_address not in logs and vera_address not in logs


@pytest.mark.service_env({"STORE_LOGIN_ATTEMPTS": "2"})
async def test_a_browser_vera_used_before_is_not_slowed_by_failures_from_the_same_address(
    gateway: Gateway,
) -> None:
    """Behind a proxy every client has the proxy's address: the device cookie of an earlier
    log-in keeps Vera's own browser apart from the attacker sharing that address."""
    gateway.seed_demo_accounts()
    url = gateway.store_url
    async with session_from() as vera, session_from() as attacker:
        assert (await try_login(vera, url, "vera", "vera-demo"))[0] == 200
        for _ in range(2):
            assert (await try_login(attacker, url, "vera", "guess"))[0] == 401
        assert (await try_login(attacker, url, "vera", "vera-demo"))[0] == 429
        assert (await try_login(vera, url, "vera", "vera-demo"))[0] == 200
        # The cookie is bound to its login: it buys no fresh counter for another one.
        device = {c.key: c.value for c in vera.cookie_jar}["hl_device"]
        for _ in range(2):
            assert (await try_login(attacker, url, "anna", "guess"))[0] == 401
        attacker.cookie_jar.update_cookies({"hl_device": device})
        assert (await try_login(attacker, url, "anna", "anna-demo"))[0] == 429


async def test_counters_expire_and_are_pruned(stack: LocalStack, repo: Repository) -> None:
    throttle = LoginThrottle(repo, free=1, window=0.5)
    stale = await throttle.attempt("someone", "192.0.2.1", None)
    await throttle.failed(stale)
    assert await throttle.wait_seconds(stale) > 0
    # Long after its wait and window, a counter is deleted by the next failure anyone makes.
    await repo.login_failures.update_many({}, {"$set": {"expires_at": utcnow() - timedelta(seconds=1)}})
    assert await throttle.wait_seconds(stale) == 0
    throttle._last_prune = 0.0  # the once-a-minute pruning is due
    fresh = await throttle.attempt("other", "192.0.2.2", None)
    await throttle.failed(fresh)
    left = {d["_id"] async for d in repo.login_failures.find()}
    assert left == {c for c, _ in fresh.counters}


@pytest.mark.service_env({"STORE_LOGIN_ATTEMPTS": "1"})
async def test_a_password_typed_into_the_login_field_is_not_logged(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    typed = f"Secret-{uuid.uuid4().hex}"  # what a consultant typed into the wrong field
    async with session_from() as http:
        assert (await try_login(http, gateway.store_url, typed, "vera-demo"))[0] == 401
        assert (await try_login(http, gateway.store_url, typed, "vera-demo"))[0] == 429  # logged too
        assert (await try_login(http, gateway.store_url, "vera", typed))[0] == 401
    logs = gateway.logs()
    assert "login_failed" in logs and "login_throttled" in logs  # the failures were logged...
    assert logs.count(typed) == 0  # ...without what was typed
    assert logs.count(typed.lower()) == 0 and logs.count(typed.casefold()) == 0
