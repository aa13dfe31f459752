"""Bad input at the consultant API as an attacker sends it (issue 15): JSON nested 5,000 deep
(within the size limit), on the unauthenticated log-in too, and statistics dates at the
calendar's edges are answered with a 4xx problem detail, never a 500."""

from __future__ import annotations

import aiohttp

from tests.conftest import Gateway
from tests.integration.helpers import Consultant

DEEP_ARRAY = "[" * 5000 + "]" * 5000
DEEP_OBJECT = '{"login":' * 5000 + '"vera"' + "}" * 5000


async def post_raw(http: aiohttp.ClientSession, url: str, body: str, csrf: str = "") -> tuple[int, str, dict]:
    headers = {"Content-Type": "application/json", "X-CSRF-Token": csrf, "Idempotency-Key": "deep-json-1"}
    async with http.post(url, data=body.encode(), headers=headers) as resp:
        return resp.status, resp.content_type, await resp.json(content_type=None)


async def test_deeply_nested_json_is_a_400_problem_everywhere(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    assert len(DEEP_OBJECT.encode()) < 256 * 1024  # within the body limit: only the depth is wrong
    async with aiohttp.ClientSession() as stranger:
        for body in (DEEP_ARRAY, DEEP_OBJECT):
            status, ctype, problem = await post_raw(stranger, gateway.store_url + "/api/session", body)
            assert (status, ctype) == (400, "application/problem+json"), problem
            assert "nested deeper" in problem["detail"]
    anna = Consultant(gateway.store_url)
    try:
        await anna.login("anna", "anna-demo")
        for path in ("/api/threads/nothing/notes", "/api/consultations", "/api/me/status"):
            status, ctype, problem = await post_raw(
                anna.http, gateway.store_url + path, DEEP_OBJECT, anna.csrf
            )
            assert (status, ctype) == (400, "application/problem+json"), (path, problem)
        # A body of ordinary depth still works after all that.
        assert (await anna.call("PUT", "/api/me/status", {"status": "away"}))[0] == 200
    finally:
        await anna.close()
    assert "request_failed" not in gateway.logs()  # no 500 was logged


async def test_statistics_dates_at_the_calendars_edges_are_4xx_problems(gateway: Gateway) -> None:
    gateway.seed_demo_accounts()
    sofia = Consultant(gateway.store_url)
    try:
        await sofia.login("sofia", "sofia-demo")
        for query in (
            "from=0001-01-01",
            "from=0001-01-01&to=0001-01-02",
            "to=9999-12-31",
            "from=9999-12-30&to=9999-12-31",
            "from=0001-01-01&to=0001-12-31&compare=1",
            "from=10000-01-01",
            "to=10000-01-01",
            "from=2026-02-30",
            "from=-0001-01-01",
            "from=1e9",
        ):
            for route in ("/api/stats", "/api/stats.csv"):
                async with sofia.http.get(f"{gateway.store_url}{route}?{query}") as resp:
                    body = await resp.json(content_type=None)
                    assert resp.status == 422 and resp.content_type == "application/problem+json", (
                        query,
                        body,
                    )
        # The widest window allowed, with the year before it, is answered.
        status, table = await sofia.call("GET", "/api/stats?from=1900-01-01&to=1919-12-31&compare=1")
        assert status == 200 and table["total"]["count"] == 0, table
        status, _ = await sofia.call("GET", "/api/stats?from=2980-01-01&to=2999-12-31&period=year")
        assert status == 200
    finally:
        await sofia.close()
    assert "request_failed" not in gateway.logs()
