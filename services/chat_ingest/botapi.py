"""A small client of the Telegram Bot API (https://core.telegram.org/bots/api).

Every method is ``POST <base>/bot<token>/<method>`` with a JSON body; every answer is
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description",
"parameters": {"retry_after"}}``. A 429 carries ``retry_after`` seconds: we wait exactly that
long and try again, up to ``max_retry_after`` in total, then give up with :class:`RetryLater`
so the caller can hand the work back to its queue.

The token is part of the URL: neither the URL nor aiohttp's exception texts (which quote
it) are ever logged; only the method and the error's type or code are.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter

from shared.logs import get_logger

log = get_logger(__name__)


class BotApiError(Exception):
    """The Bot API refused the call (a 4xx other than 429): retrying will not help."""

    def __init__(self, method: str, code: int, description: str) -> None:
        super().__init__(f"{method}: {code} {description}")
        self.code = code
        self.description = description


class RetryLater(Exception):
    """The call may succeed later: flood control beyond our patience, a 5xx, or no network."""


class BotApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "hotline_telegram_api_calls_total",
            "Bot API calls, by method and outcome",
            ["method", "outcome"],
            registry=registry,
        )
        self.retry_waits = Counter(
            "hotline_telegram_retry_after_seconds_total",
            "Seconds waited on 429 retry_after",
            registry=registry,
        )


class BotApi:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        token: str,
        max_retry_after: float,
        metrics: BotApiMetrics,
    ) -> None:
        self._http = http
        self._url = f"{base_url.rstrip('/')}/bot{token}/"
        self._max_wait = max_retry_after
        self._metrics = metrics
        # Flood control is per bot: after a 429 every call of this bot waits, not only the
        # one that was refused (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this).
        self._not_before = 0.0

    async def call(self, method: str, payload: dict[str, Any] | None = None) -> Any:
        waited = 0.0
        loop = asyncio.get_running_loop()
        while True:
            pause = self._not_before - loop.time()
            if pause > 0:
                if waited + pause > self._max_wait:
                    raise RetryLater(f"{method}: flood control for {pause:.0f}s more")
                waited += pause
                await asyncio.sleep(pause)  # the wait Telegram asked for, not a guess
                continue
            try:
                async with self._http.post(
                    self._url + method, json=payload or {}, timeout=aiohttp.ClientTimeout(total=30)
                ) as resp:
                    status = resp.status
                    try:
                        body = await resp.json(content_type=None)
                    except ValueError:
                        body = None
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._metrics.calls.labels(method, "network").inc()
                log.warning("telegram_api_unreachable", method=method, error=type(exc).__name__)
                raise RetryLater(method) from None
            if not isinstance(body, dict):
                self._metrics.calls.labels(method, "bad_answer").inc()
                raise RetryLater(f"{method}: {status} without a JSON answer")
            if body.get("ok") is True:
                self._metrics.calls.labels(method, "ok").inc()
                return body.get("result")
            code = int(body.get("error_code") or status)
            params: dict[str, Any] = body["parameters"] if isinstance(body.get("parameters"), dict) else {}
            if code == 429:
                retry_after = float(params.get("retry_after") or 1)
                self._metrics.calls.labels(method, "429").inc()
                if waited + retry_after > self._max_wait:
                    log.warning("telegram_flood_control", method=method, retry_after=retry_after)
                    raise RetryLater(f"{method}: retry after {retry_after}s")
                log.info("telegram_retry_after", method=method, retry_after=retry_after)
                self._metrics.retry_waits.inc(retry_after)
                self._not_before = max(self._not_before, loop.time() + retry_after)
                continue
            if code >= 500:
                self._metrics.calls.labels(method, "5xx").inc()
                raise RetryLater(f"{method}: {code}")
            self._metrics.calls.labels(method, str(code)).inc()
            raise BotApiError(method, code, str(body.get("description", "")))

    async def send_message(self, payload: dict[str, Any]) -> dict[str, Any]:
        result = await self.call("sendMessage", payload)
        return result if isinstance(result, dict) else {}

    async def delete_messages(self, chat_id: int, message_ids: list[int]) -> None:
        """deleteMessages: 1-100 ids of one chat; those not found are skipped (Bot API)."""
        await self.call("deleteMessages", {"chat_id": chat_id, "message_ids": message_ids})

    async def delete_message(self, chat_id: int, message_id: int) -> None:
        await self.call("deleteMessage", {"chat_id": chat_id, "message_id": message_id})

    async def answer_callback(self, callback_id: str) -> None:
        await self.call("answerCallbackQuery", {"callback_query_id": callback_id})

    async def webhook_info(self) -> dict[str, Any]:
        result = await self.call("getWebhookInfo")
        return result if isinstance(result, dict) else {}
