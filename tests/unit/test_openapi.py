"""The OpenAPI document at /api/openapi.json matches the store's routes."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from deploy.local.services import new_master_key
from services.store import openapi
from services.store.app import create_app
from services.store.openapi import OPERATIONS, api_routes, document
from services.store.settings import StoreSettings


@pytest.fixture
async def app() -> AsyncIterator[web.Application]:
    # Building the app connects to nothing: clients connect in its cleanup context, not run here.
    settings = StoreSettings(
        amqp_url="amqp://u:p@127.0.0.1:1/v",
        mongo_url="mongodb://127.0.0.1:1/",
        client_key_secret="k" * 32,
        master_key=new_master_key(),
    )
    application = create_app(settings)
    yield application


def test_every_route_is_documented_and_every_documented_route_exists(app: web.Application) -> None:
    doc = document(app)
    routes = {(m, p) for m, p, _ in api_routes(app)}
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented
    # Nothing described here is missing from the router (a renamed or removed route).
    assert set(OPERATIONS) <= routes, set(OPERATIONS) - routes
    # Every console route of section 4 is described here, not only by a docstring.
    section_4 = {
        ("POST", "/api/session"), ("DELETE", "/api/session"), ("PUT", "/api/me/status"),
        ("GET", "/api/queues"), ("GET", "/api/threads"), ("POST", "/api/queues/{queue}/next"),
        ("POST", "/api/threads/{id}/claim"), ("GET", "/api/threads/{id}"),
        ("POST", "/api/threads/{id}/messages"), ("POST", "/api/threads/{id}/notes"),
        ("POST", "/api/threads/{id}/transfer"), ("POST", "/api/threads/{id}/release"),
        ("POST", "/api/threads/{id}/close"), ("GET", "/api/events"),
    }  # fmt: skip
    assert section_4 <= set(OPERATIONS)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_document_is_well_formed(app: web.Application) -> None:
    doc = document(app)
    assert doc["openapi"].startswith("3.1")
    ids = []
    for path, ops in doc["paths"].items():
        params = set(re.findall(r"\{(\w+)\}", path))
        for method, op in ops.items():
            assert method in {"get", "put", "post", "delete", "patch"}
            assert op["summary"] and op["responses"], (method, path)
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == params, (method, path)
            assert all(re.fullmatch(r"[1-5]\d\d", code) for code in op["responses"])
            if method in {"post", "put", "delete"} and path != "/api/session":
                # Every state-changing call can be refused for a missing CSRF token.
                assert "403" in op["responses"] or (method.upper(), path) not in OPERATIONS, (method, path)
            ids.append(op["operationId"])
    assert len(ids) == len(set(ids))
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


async def test_served_as_json(app: web.Application) -> None:
    request = make_mocked_request("GET", "/api/openapi.json", app=app)
    resp = await openapi.serve(request)
    assert resp.status == 200 and resp.content_type == "application/json"
    assert json.loads(resp.text or "") == document(app)
