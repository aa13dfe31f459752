"""deploy/rabbitmq/definitions.json, imported into a real RabbitMQ, is the topology the services declare.

docker-compose.yml imports the file with `python -m deploy.definitions import` before any service
starts, and every service then declares the topology itself (shared/topology.declare). RabbitMQ
refuses a redeclaration whose arguments differ (PRECONDITION_FAILED), so declaring over the imported
file proves the two agree argument for argument; and comparing what is in the vhost before and after
proves the file leaves nothing out.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
import pytest

from deploy.local.stack import LocalStack
from shared import topology

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"


def management(stack: LocalStack, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 (the test stack's loopback URL)
        f"{stack.rabbit_mgmt_url}api/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
        },
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        data = response.read()
    return json.loads(data) if data else None


def contents(stack: LocalStack, vhost: str) -> dict[str, Any]:
    """What the vhost holds, in the terms a redeclaration is checked by."""
    v = quote(vhost, safe="")
    return {
        "exchanges": sorted(
            (e["name"], e["type"], e["durable"], e["auto_delete"], e["internal"], e["arguments"])
            for e in management(stack, "GET", f"exchanges/{v}")
            if e["name"] and not e["name"].startswith("amq.")
        ),
        "queues": sorted(
            (q["name"], q["durable"], q["auto_delete"], q.get("exclusive", False), json.dumps(q["arguments"]))
            for q in management(stack, "GET", f"queues/{v}")
        ),
        "bindings": sorted(
            (b["source"], b["destination"], b["destination_type"], b["routing_key"])
            for b in management(stack, "GET", f"bindings/{v}")
            if b["source"]  # the default exchange's implicit bindings
        ),
    }


def run_import(stack: LocalStack, vhost: str, password: str) -> subprocess.CompletedProcess[str]:
    """The command docker-compose.yml's rabbitmq-definitions service runs."""
    command = [sys.executable, "-m", "deploy.definitions", "import", "--url", stack.rabbit_mgmt_url]
    command += ["--user", "guest", "--vhost", vhost, "--file", str(DEFINITIONS), "--wait", "10"]
    env = {**os.environ, "RABBITMQ_PASSWORD": password}
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def vhost(stack: LocalStack):
    name = f"definitions-{uuid.uuid4().hex[:8]}"
    url = stack.add_vhost(name)
    yield name, url
    stack.delete_vhost(name)


async def test_services_declare_the_topology_over_the_imported_definitions(stack: LocalStack, vhost) -> None:
    name, url = vhost
    defs = json.loads(DEFINITIONS.read_text())
    result = await asyncio.to_thread(run_import, stack, name, "guest")
    assert result.returncode == 0, result.stderr
    imported = await asyncio.to_thread(contents, stack, name)
    assert {q[0] for q in imported["queues"]} == {q["name"] for q in defs["queues"]}
    dead = topology.dead_queue(topology.DISPATCHER_INBOUND.name)
    assert any(q[0] == dead and '"x-queue-type": "quorum"' in q[4] for q in imported["queues"])

    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        # Raises ChannelPreconditionFailed if one argument, type or flag differs from the import.
        await topology.declare(channel)
    finally:
        await connection.close()

    assert await asyncio.to_thread(contents, stack, name) == imported, "declare added what the file lacks"


async def test_import_with_a_wrong_password_fails_at_once_and_imports_nothing(
    stack: LocalStack, vhost
) -> None:
    name, _ = vhost
    result = await asyncio.to_thread(run_import, stack, name, "not-the-password")
    assert result.returncode == 1 and "HTTP 401" in result.stderr
    assert (await asyncio.to_thread(contents, stack, name))["queues"] == []
