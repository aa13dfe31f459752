"""Live console sockets end with their session (issue 15): logging out, or an admin disabling
the account, closes that login's /api/events sockets at once, on every store replica, and they
hear no further event; other people's sockets stay open. In Chromium, a console whose session
ended elsewhere falls back to the log-in form, says why, and keeps nothing of what it showed."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
from playwright.async_api import Browser, Page, expect

from deploy.local.stack import free_ports
from services.store.events import SESSION_ENDED_CODE
from tests.conftest import Gateway
from tests.integration.helpers import Consultant
from tests.integration.test_access_matrix import add_user, start_chat
from tests.integration.test_open_threads_listed import console


def second_store(gateway: Gateway) -> str:
    """Another store replica on the same broker and database; returns its URL."""
    (port,) = free_ports(1)
    gateway.processes.start(
        "store", {**gateway.env["store"], "STORE_HTTP_PORT": str(port)}, replica="store_b"
    )
    gateway.processes.wait_ready({**gateway.ports, "store_b": port})
    return f"http://127.0.0.1:{port}"


async def closed(c: Consultant) -> aiohttp.WSMessage:
    """The next frame of ``c``'s socket, which must be its closing: not one event more."""
    assert c.events is not None
    msg = await c.events.receive(timeout=15)
    assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == SESSION_ENDED_CODE, msg
    return msg


def add_admin(gateway: Gateway) -> None:
    """Olga, a national administrator of both lines (password ``olga-admin-password``)."""
    done = add_user(
        gateway, "add-user", "--login=olga", "--role=national_admin", "--lines=113,dv", "--password-stdin",
        password="olga-admin-password",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


async def consultant(url: str, login: str, password: str) -> Consultant:
    c = Consultant(url)
    await c.login(login, password)
    await c.open_events()
    return c


async def test_logout_and_disabling_close_the_logins_sockets_on_every_replica(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    add_admin(gateway)
    url_b = await asyncio.to_thread(second_store, gateway)
    anna_a = await consultant(gateway.store_url, "anna", "anna-demo")
    anna_b = await consultant(url_b, "anna", "anna-demo")  # another session, another replica
    boris_a = await consultant(gateway.store_url, "boris", "boris-demo")
    boris_b = await consultant(url_b, "boris", "boris-demo")
    sofia = await consultant(url_b, "sofia", "sofia-demo")
    olga = await consultant(gateway.store_url, "olga", "olga-admin-password")
    try:
        # Log-out on replica A closes that session's socket; Anna's other session keeps hers.
        assert (await anna_a.call("DELETE", "/api/session"))[0] == 200
        await closed(anna_a)
        async with aiohttp.ClientSession() as http:
            await start_chat(http, gateway, "вопрос", line="113", region="minsk")
        queued = await anna_b.wait_event(lambda e: e["name"] == "ThreadQueued")
        await sofia.wait_event(lambda e: e["thread_id"] == queued["thread_id"])

        # Disabling Boris closes both his sockets, on both replicas, before any later event.
        assert (await olga.call("POST", "/api/users/boris/disable"))[0] == 200
        for socket in (boris_a, boris_b):
            await closed(socket)
        async with aiohttp.ClientSession() as http:
            await start_chat(http, gateway, "ещё вопрос", line="113", region="minsk")
        later = await sofia.wait_event(
            lambda e: e["name"] == "ThreadQueued" and e["thread_id"] != queued["thread_id"]
        )
        await anna_b.wait_event(lambda e: e["thread_id"] == later["thread_id"])
        # A closed socket stays closed, and its cookie opens no new one.
        for c in (anna_a, boris_a, boris_b):
            assert c.events is not None and c.events.closed
            async with c.http.get(c.base + "/api/events") as resp:
                assert resp.status == 401
    finally:
        for c in (anna_a, anna_b, boris_a, boris_b, sofia, olga):
            await c.close()


async def read_thread(page: Page, queue: str, thread: str, text: str) -> None:
    """The console of ``page`` shows ``thread`` of ``queue`` in its list and its ``text`` open."""
    await page.locator(f'button[data-queue="{queue}"]').click()
    await page.locator(f'#threads button[data-thread="{thread}"]').click()
    await expect(page.locator("#thread")).to_contain_text(text)


async def shows_log_in_only(page: Page, text: str) -> None:
    """The log-in form with the notice, and nothing left of the threads or of ``text``."""
    await expect(page.locator("#login-notice")).to_have_text(
        "Your session ended: logged out elsewhere, or the account was disabled. Log in again."
    )
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    await expect(page.locator("#app")).to_be_hidden()
    await expect(page.locator("#threads button")).to_have_count(0)
    # Hidden is not enough: whoever uses this screen next could read the page's text.
    await expect(page.locator("body")).not_to_contain_text(text)


async def test_a_console_whose_session_ended_elsewhere_shows_the_log_in_form(
    gateway: Gateway, browser: Browser
) -> None:
    gateway.seed_demo_accounts()
    add_admin(gateway)
    olga = await consultant(gateway.store_url, "olga", "olga-admin-password")
    text = f"вопрос {uuid.uuid4().hex}"
    try:
        async with aiohttp.ClientSession() as http:
            await start_chat(http, gateway, text, line="113", region="minsk")
        queued = await olga.wait_event(lambda e: e["name"] == "ThreadQueued")
        page = await console(browser, gateway, "anna", "anna-demo")
        await read_thread(page, queued["queue"], queued["thread_id"], text)

        # Logged out from another tab of the same browser: the same session, ended through the API.
        csrf = await page.evaluate("sessionStorage.getItem('hl_csrf')")
        ended = await page.context.request.delete(
            gateway.store_url + "/api/session", headers={"X-CSRF-Token": csrf}
        )
        assert ended.status == 200
        await shows_log_in_only(page, text)

        # Logged in again, and an administrator disables the account.
        await page.get_by_label("Login").fill("anna")
        await page.get_by_label("Password").fill("anna-demo")
        await page.get_by_role("button", name="Log in").click()
        await expect(page.locator("#login-notice")).to_be_hidden()
        await read_thread(page, queued["queue"], queued["thread_id"], text)
        assert (await olga.call("POST", "/api/users/anna/disable"))[0] == 200
        await shows_log_in_only(page, text)
    finally:
        await olga.close()
