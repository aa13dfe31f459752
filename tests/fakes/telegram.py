"""A local stand-in for the Telegram Bot API (https://core.telegram.org/bots/api), speaking
its documented JSON: ``POST /bot<token>/<method>``, answers ``{"ok": true, "result": ...}``
or ``{"ok": false, "error_code", "description"[, "parameters": {"retry_after"}]}``.

It knows the methods the gateway uses (sendMessage, answerCallbackQuery, getWebhookInfo,
setWebhook, getMe), records every call, and can be told to answer the next calls of a
method with 429 Too Many Requests. It also posts updates to a webhook as Telegram does,
with the secret token header.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web


@dataclass
class Call:
    token: str
    method: str
    body: dict[str, Any]
    at: float
    status: int


@dataclass
class FakeBotApi:
    tokens: set[str]
    calls: list[Call] = field(default_factory=list)
    flood: dict[str, list[int]] = field(default_factory=dict)  # method -> retry_after of next 429s
    webhook_info: dict[str, Any] = field(
        default_factory=lambda: {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
    )
    url: str = ""
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _next_message_id: int = 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def fail_next(self, method: str, retry_after: int, times: int = 1) -> None:
        self.flood.setdefault(method, []).extend([retry_after] * times)

    def sent(self, chat_id: int | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.method == "sendMessage"
            and c.status == 200
            and (chat_id is None or c.body.get("chat_id") == chat_id)
        ]

    async def wait_for(self, predicate: Any, within: float = 20) -> None:
        async def loop() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(loop(), within)

    @staticmethod
    def _error(code: int, description: str, **parameters: Any) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=code)

    async def _handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return self._error(400, "Bad Request: can't parse JSON")
        resp = self._answer(token, method, body if isinstance(body, dict) else {})
        self.calls.append(Call(token, method, body, time.monotonic(), resp.status))
        async with self._changed:
            self._changed.notify_all()
        return resp

    def _answer(self, token: str, method: str, body: dict[str, Any]) -> web.Response:
        if token not in self.tokens:
            return self._error(401, "Unauthorized")
        pending = self.flood.get(method)
        if pending:
            retry_after = pending.pop(0)
            return self._error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
        if method == "sendMessage":
            text = body.get("text")
            if not isinstance(body.get("chat_id"), int | str):
                return self._error(400, "Bad Request: chat_id is empty")
            if not isinstance(text, str) or not text:
                return self._error(400, "Bad Request: message text is empty")
            if len(text) > 4096:
                return self._error(400, "Bad Request: message is too long")
            if body["chat_id"] == 403:
                return self._error(403, "Forbidden: bot was blocked by the user")
            self._next_message_id += 1
            return web.json_response(
                {
                    "ok": True,
                    "result": {
                        "message_id": self._next_message_id,
                        "date": int(time.time()),
                        "chat": {"id": body["chat_id"], "type": "private"},
                        "text": text,
                    },
                }
            )
        if method == "answerCallbackQuery":
            if not body.get("callback_query_id"):
                return self._error(400, "Bad Request: query is too old and response timeout expired")
            return web.json_response({"ok": True, "result": True})
        if method == "getWebhookInfo":
            return web.json_response({"ok": True, "result": self.webhook_info})
        if method == "setWebhook":
            self.webhook_info = {**self.webhook_info, "url": body.get("url", "")}
            return web.json_response({"ok": True, "result": True, "description": "Webhook was set"})
        if method == "getMe":
            return web.json_response(
                {"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "Hotline"}}
            )
        return self._error(404, "Not Found")


class Telegram:
    """Posts updates to a bot's webhook the way Telegram does."""

    def __init__(self, http: aiohttp.ClientSession, webhook_url: str, secret: str) -> None:
        self.http = http
        self.url = webhook_url
        self.secret = secret
        self.next_update_id = 1000

    def text(self, chat_id: int, text: str, update_id: int | None = None, lang: str = "ru") -> dict[str, Any]:
        uid = update_id if update_id is not None else self._uid()
        return {
            "update_id": uid,
            "message": {
                "message_id": uid,
                "date": int(time.time()),
                "from": {"id": chat_id, "is_bot": False, "first_name": "A", "language_code": lang},
                "chat": {"id": chat_id, "type": "private", "first_name": "A"},
                "text": text,
            },
        }

    def button(self, chat_id: int, data: str, lang: str = "ru") -> dict[str, Any]:
        uid = self._uid()
        return {
            "update_id": uid,
            "callback_query": {
                "id": f"cq{uid}",
                "from": {"id": chat_id, "is_bot": False, "first_name": "A", "language_code": lang},
                "message": {
                    "message_id": 1,
                    "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "private"},
                },
                "chat_instance": "1",
                "data": data,
            },
        }

    def _uid(self) -> int:
        self.next_update_id += 1
        return self.next_update_id

    async def post(self, update: Any, secret: str | None = None, raw: bytes | None = None) -> int:
        headers = {"Content-Type": "application/json"}
        token = self.secret if secret is None else secret
        if token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = token
        async with self.http.post(
            self.url, data=raw if raw is not None else _json(update), headers=headers
        ) as resp:
            await resp.read()
            return resp.status


def _json(value: Any) -> bytes:
    import json

    return json.dumps(value, ensure_ascii=False).encode()
