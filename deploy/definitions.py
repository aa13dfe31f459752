"""The broker topology as RabbitMQ definitions.

``python -m deploy.definitions write [PATH]`` writes ``deploy/rabbitmq/definitions.json`` from
``shared/topology.py`` (the file is committed; tests/unit/test_compose.py fails when the two
differ). ``python -m deploy.definitions import`` loads that file into a running broker through
the management API (``POST /api/definitions/{vhost}``); docker-compose.yml runs it once, as the
one-shot service ``rabbitmq-definitions``, before the gateway's services start. The password is
read from the environment variable ``RABBITMQ_PASSWORD``, never from the command line.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

from shared.topology import definitions

DEFAULT_PATH = Path(__file__).resolve().parent / "rabbitmq" / "definitions.json"


def render(vhost: str = "/") -> str:
    return json.dumps(definitions(vhost), indent=2, sort_keys=True) + "\n"


def import_file(path: Path, url: str, user: str, password: str, vhost: str, wait: float) -> None:
    """POST the definitions to ``{url}api/definitions/{vhost}``, retrying until the management
    API answers or ``wait`` seconds pass (the broker may still be booting its plugins).

    Raises urllib.error.HTTPError for an answer other than 2xx that is not worth retrying
    (401: wrong credentials; 400: a bad file), OSError when the API never answered.
    """
    body = path.read_bytes()
    json.loads(body)  # a broken file fails here, with the JSON error, not as an HTTP 400
    request = urllib.request.Request(  # noqa: S310 (an operator-given management URL)
        f"{url.rstrip('/')}/api/definitions/{quote(vhost, safe='')}",
        method="POST",
        data=body,
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
        },
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + wait
    while True:
        try:
            with opener.open(request, timeout=30):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                raise
            failure: OSError = exc
        except OSError as exc:  # refused, reset, DNS: the broker is not up yet
            failure = exc
        if time.monotonic() >= deadline:
            raise failure
        time.sleep(2)  # polling a server that gives no event to wait for


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.definitions", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="write the definitions file from shared/topology.py")
    write.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    load = commands.add_parser("import", help="import the definitions file into a running broker")
    load.add_argument("--url", required=True, help="management API, e.g. http://rabbitmq:15672/")
    load.add_argument("--user", required=True, help="an administrator; password in RABBITMQ_PASSWORD")
    load.add_argument("--vhost", default="/")
    load.add_argument("--file", type=Path, default=DEFAULT_PATH)
    load.add_argument("--wait", type=float, default=120, help="seconds to wait for the management API")
    args = parser.parse_args(argv)
    if args.command == "write":
        args.path.write_text(render())
        print(f"wrote {args.path}")
        return 0
    password = os.environ.get("RABBITMQ_PASSWORD")
    if not password:
        print("set RABBITMQ_PASSWORD", file=sys.stderr)
        return 2
    try:
        import_file(args.file, args.url, args.user, password, args.vhost, args.wait)
    except urllib.error.HTTPError as exc:
        print(f"import failed: HTTP {exc.code} {exc.reason}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"import failed: {exc}", file=sys.stderr)
        return 1
    print(f"imported {args.file.name} into vhost {args.vhost!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
