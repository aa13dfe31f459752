"""docker-compose.yml, deploy/Dockerfile and .env.example agree with the compose specification and the code.

No Docker engine runs where the suite runs, so the container set-up is checked as text: the compose file
against the compose-spec JSON schema, and every service's environment, port, health check and command
against its Settings class and entry point, so that a renamed setting or a moved port fails here instead of
at the operator's first `docker compose up`. Variables are interpolated with the values of .env.example, as
compose would with a .env copied from it.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import yaml
from pydantic import SecretStr

from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
CONFIG_FILE = "deploy/config/hotline.yaml"

SERVICES = ("store", "dispatcher", "email_ingest", "chat_ingest")
BROKER, DATABASE = "rabbitmq", "mongodb"
DEFINITIONS, PROXY = "rabbitmq-definitions", "proxy"
MONITORING = ("prometheus", "grafana")
# The proxy serves exactly these, each on its own port (PRODUCT.md 4); nothing else is published.
PUBLISHED = {"store", "chat_ingest"}
# The paths that are WebSockets (PRODUCT.md 4): the proxy must pass the upgrade on.
WEBSOCKETS = {"store": "/api/events", "chat_ingest": "/chat/ws"}
NGINX_CONF = ROOT / "deploy" / "proxy" / "nginx.conf"
DOCKERIGNORE = ROOT / ".dockerignore"
REPLICA_SET = "rs0"

COMPOSE_SPEC_MODULE = "github.com/compose-spec/compose-go/v2@v2.16.2"
INSTALL_HINT = (
    "run `bash deploy/local/install.sh` (it downloads the compose-spec schema with `go mod download`)"
)

READYZ_URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost):(\d+)/readyz\b")


# --- compose variable interpolation (https://github.com/compose-spec/compose-spec/blob/main/12-interpolation.md)


class MissingVariable(Exception):
    pass


@dataclass(frozen=True)
class VarRef:
    name: str
    op: str | None  # None, ":-", "-", ":?", "?", ":+", "+"
    arg: str


_DOLLAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*)|(?P<bad>))"
)
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?", re.DOTALL)


def _ref(match: re.Match[str]) -> VarRef | None:
    if match["escaped"]:
        return None
    if match["named"]:
        return VarRef(match["named"], None, "")
    braced = _BRACED.fullmatch(match["braced"] or "")
    assert match["bad"] is None and braced, f"malformed variable reference at {match.string!r}"
    assert "$" not in (braced["arg"] or ""), f"nested interpolation is not checked here: {match.string!r}"
    return VarRef(braced["name"], braced["op"], braced["arg"] or "")


def var_refs(text: str) -> list[VarRef]:
    return [ref for m in _DOLLAR.finditer(text) if (ref := _ref(m))]


def interpolate(text: str, env: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        ref = _ref(match)
        if ref is None:
            return "$"
        value = env.get(ref.name)
        if ref.op is None:
            if value is None:
                raise MissingVariable(ref.name)
            return value
        if ref.op in (":?", "?") and (value is None or (ref.op == ":?" and not value)):
            raise MissingVariable(f"{ref.name}: {ref.arg}")
        if ref.op == ":-":
            return value or ref.arg
        if ref.op == "-":
            return ref.arg if value is None else value
        if ref.op == ":+":
            return ref.arg if value else ""
        if ref.op == "+":
            return "" if value is None else ref.arg
        assert value is not None
        return value

    return _DOLLAR.sub(substitute, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    return node


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


def env_example() -> dict[str, str]:
    """The variables of .env.example; each one must follow a comment that explains it."""
    values: dict[str, str] = {}
    previous = ""
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            name, sep, value = stripped.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), f".env.example:{number}: not NAME=value"
            assert previous.startswith("#"), f".env.example:{number}: {name} has no comment above it"
            assert name not in values, f".env.example:{number}: {name} twice"
            values[name] = value
        previous = stripped
    return values


# --- the compose file


def raw_compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(doc, dict)
    return doc


def compose() -> dict[str, Any]:
    """The compose file as compose sees it with a .env copied from .env.example."""
    return interpolate_tree(raw_compose(), env_example())


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the ["NAME=value"] form
        env = dict(item.split("=", 1) for item in env)
    return {name: "" if value is None else str(value) for name, value in env.items()}


def settings_class(name: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{name}.settings")
    classes = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, ServiceSettings) and cls.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"services.{name}.settings should define one Settings class, has {classes}"
    return classes[0]


def prefix_of(name: str) -> str:
    prefix = settings_class(name).model_config.get("env_prefix", "")
    assert prefix == name.upper() + "_", f"{name}: env_prefix is {prefix!r}"
    return prefix


def is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


@pytest.fixture
def load_settings(monkeypatch: pytest.MonkeyPatch):
    """Build a service's Settings from exactly the given environment, as its process in a container would."""

    def load(name: str, env: Mapping[str, str]) -> ServiceSettings:
        prefix = prefix_of(name)
        for key in list(os.environ):
            if key.upper().startswith(prefix):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return settings_class(name)()

    return load


# --- the Dockerfile, as text


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Dockerfile:
    global_args: dict[str, str | None]
    stages: list[Stage]

    def stage_names(self) -> set[str]:
        return {s.name for s in self.stages if s.name}


def parse_dockerfile(text: str) -> Dockerfile:
    """Instructions with continuation lines joined and comments dropped, grouped by stage."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue  # Docker drops comment lines, also inside a continued instruction
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        if logical:
            keyword, _, arguments = logical.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"

    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for keyword, arguments in instructions:
        if keyword == "FROM":
            words = [w for w in arguments.split() if not w.startswith("--")]
            assert len(words) in (1, 3), f"FROM {arguments}"
            stages.append(Stage(words[0], words[2] if len(words) == 3 else None))
        elif not stages:
            assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
            arg_name, sep, default = arguments.partition("=")
            global_args[arg_name] = default if sep else None
        else:
            stages[-1].instructions.append((keyword, arguments))
    return Dockerfile(global_args, stages)


def expand(text: str, values: Mapping[str, str | None]) -> str:
    """Dockerfile variable substitution for ${NAME} and $NAME; unknown names are left as written."""

    def substitute(match: re.Match[str]) -> str:
        value = values.get(match[1] or match[2])
        return match[0] if value is None else value

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", substitute, text)


@dataclass
class Image:
    """What one `docker build --build-arg SERVICE=<name>` produces, as far as these tests care."""

    base: str
    stages: list[Stage]
    env: dict[str, str]

    def last(self, keyword: str) -> str | None:
        found = [a for s in self.stages for k, a in s.instructions if k == keyword]
        return found[-1] if found else None

    def all(self, keyword: str) -> list[str]:
        return [a for s in self.stages for k, a in s.instructions if k == keyword]


def build_image(df: Dockerfile, service: str) -> Image:
    build_args = {"SERVICE": service}
    global_values = {**df.global_args, **build_args}
    by_name = {s.name: s for s in df.stages if s.name}
    chain = [df.stages[-1]]
    base = expand(chain[0].base, global_values)
    while base in by_name:
        chain.insert(0, by_name[base])
        base = expand(chain[0].base, global_values)

    env: dict[str, str] = {}
    for stage in chain:
        args: dict[str, str | None] = {}  # an ARG is in scope only in the stage that declares it
        for keyword, arguments in stage.instructions:
            if keyword == "ARG":
                arg_name, sep, default = arguments.partition("=")
                args[arg_name] = build_args.get(arg_name, global_values.get(arg_name) if not sep else default)
            elif keyword == "ENV":
                tokens = shlex.split(arguments)
                pairs = (
                    [t.split("=", 1) for t in tokens]
                    if "=" in tokens[0]
                    else [[tokens[0], " ".join(tokens[1:])]]
                )
                for key, value in pairs:
                    env[key] = expand(value, {**args, **env})
    return Image(base, chain, env)


def is_pinned(image: str) -> bool:
    name, _, _digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    return bool(tag) and tag != "latest" and "$" not in image


# --- tests: the compose file as a whole


def compose_schema_path() -> Path:
    try:
        result = subprocess.run(
            ["go", "env", "GOMODCACHE"], capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        pytest.fail(f"Go is not installed, so the compose-spec schema cannot be found: {INSTALL_HINT}")
    assert result.returncode == 0, f"`go env GOMODCACHE` failed: {result.stderr.strip()}; {INSTALL_HINT}"
    path = Path(result.stdout.strip()) / COMPOSE_SPEC_MODULE / "schema" / "compose-spec.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: {INSTALL_HINT}")
    return path


def test_compose_file_follows_the_compose_specification():
    schema = json.loads(compose_schema_path().read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
    for doc in (raw_compose(), compose()):
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors] == []


def test_compose_runs_the_broker_the_database_and_every_service():
    on_disk = sorted(p.parent.name for p in (ROOT / "services").glob("*/__main__.py"))
    assert on_disk == sorted(SERVICES)
    services = compose()["services"]
    assert set(services) == {BROKER, DATABASE, DEFINITIONS, PROXY, *SERVICES, *MONITORING}
    optional = {name for name, service in services.items() if service.get("profiles")}
    assert optional == set(MONITORING), "a plain `docker compose up -d` starts everything but monitoring"
    assert all(services[name]["profiles"] == ["monitoring"] for name in MONITORING)


def test_every_variable_is_in_env_example_and_nothing_else_is():
    used = {ref.name for text in strings(raw_compose()) for ref in var_refs(text)}
    listed = set(env_example())
    assert sorted(used - listed) == [], "used by docker-compose.yml but missing from .env.example"
    assert sorted(listed - used) == [], "listed in .env.example but not used by docker-compose.yml"


def test_broker_and_database_are_healthchecked_with_data_on_named_volumes():
    doc = compose()
    services, volumes = doc["services"], doc.get("volumes") or {}
    assert services[BROKER]["image"] == "rabbitmq:3.13-management"
    assert services[DATABASE]["image"] == "mongo:7"
    assert services[BROKER]["healthcheck"]["test"] == ["CMD", "rabbitmq-diagnostics", "-q", "ping"]
    mongo_check = services[DATABASE]["healthcheck"]["test"]
    assert mongo_check[0] == "CMD-SHELL" and mongo_check[1].startswith("mongosh ")
    for name, data_dir in ((BROKER, "/var/lib/rabbitmq"), (DATABASE, "/data/db")):
        mounts = dict(reversed(v.split(":")[:2]) for v in services[name]["volumes"])
        assert data_dir in mounts, f"{name}: no volume on {data_dir}"
        assert mounts[data_dir] in volumes, f"{name}: {mounts[data_dir]} is not a named volume"
        assert "ports" not in services[name], f"{name} must not be published on the host"


def test_services_reach_the_broker_and_database_with_the_credentials_they_are_created_with():
    services = compose()["services"]
    broker_env, db_env = environment(services[BROKER]), environment(services[DATABASE])
    raw_services = raw_compose()["services"]
    for raw in (environment(raw_services[BROKER]), environment(raw_services[DATABASE])):
        secrets = [v for k, v in raw.items() if "PASS" in k]
        assert secrets and all(_required_only(v) for v in secrets), f"a default password is baked in: {raw}"
    for name in SERVICES:
        prefix = prefix_of(name)
        env = environment(services[name])
        amqp = urlsplit(env[prefix + "AMQP_URL"])
        assert (amqp.scheme, amqp.hostname, amqp.port or 5672) == ("amqp", BROKER, 5672)
        assert (amqp.username, amqp.password) == (
            broker_env["RABBITMQ_DEFAULT_USER"],
            broker_env["RABBITMQ_DEFAULT_PASS"],
        )
        if prefix + "MONGO_URL" not in env:
            assert "mongo_url" not in settings_class(name).model_fields, name
            continue
        mongo = urlsplit(env[prefix + "MONGO_URL"])
        assert (mongo.scheme, mongo.hostname, mongo.port or 27017) == ("mongodb", DATABASE, 27017)
        assert parse_qs(mongo.query).get("replicaSet") == [REPLICA_SET], "retryable writes need the set"
        assert (mongo.username, mongo.password) == (
            db_env["MONGO_INITDB_ROOT_USERNAME"],
            db_env["MONGO_INITDB_ROOT_PASSWORD"],
        )


def _required_only(text: str) -> bool:
    """The value comes from at least one variable, and every variable in it must be set (no default)."""
    refs = var_refs(text)
    return bool(refs) and all(ref.op in (":?", "?") for ref in refs)


# --- tests: each service in the compose file


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_its_entry_point_from_its_own_image(name):
    service = compose()["services"][name]
    assert service["command"] == ["python", "-m", f"services.{name}"]
    assert (ROOT / "services" / name / "__main__.py").is_file()
    build = service["build"]
    assert build["context"] == "."
    assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE
    assert build["args"] == {"SERVICE": name}
    # The service's own stage of the Dockerfile, the same one `--build-arg SERVICE` alone selects.
    assert build["target"] == f"service-{name}"
    df = parse_dockerfile(DOCKERFILE.read_text())
    assert build["target"] in df.stage_names()
    assert expand(df.stages[-1].base, {"SERVICE": name}) == build["target"]
    assert service["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", SERVICES)
def test_service_starts_after_a_healthy_broker_and_database_it_uses(name):
    depends_on = compose()["services"][name]["depends_on"]
    assert isinstance(depends_on, dict), "the short list form cannot wait for health"
    uses_database = "mongo_url" in settings_class(name).model_fields
    expected = {BROKER: "service_healthy", DEFINITIONS: "service_completed_successfully"}
    if uses_database:
        expected[DATABASE] = "service_healthy"
    assert {dep: cond.get("condition") for dep, cond in depends_on.items()} == expected


@pytest.mark.parametrize("name", SERVICES)
def test_service_environment_names_only_its_own_settings(name):
    cls, prefix = settings_class(name), prefix_of(name)
    env = environment(compose()["services"][name])
    foreign = [key for key in env if not key.startswith(prefix)]
    assert foreign == [], f"{name} reads only {prefix}* variables"
    unknown = [key for key in env if key[len(prefix) :].lower() not in cls.model_fields]
    assert unknown == [], f"not fields of {cls.__name__}"
    assert [key for key in env if key != key.upper()] == []


@pytest.mark.parametrize("name", SERVICES)
def test_service_sets_every_required_setting_and_no_secret_default(name):
    cls, prefix = settings_class(name), prefix_of(name)
    env = environment(compose()["services"][name])
    raw = environment(raw_compose()["services"][name])
    required = [prefix + field.upper() for field, info in cls.model_fields.items() if info.is_required()]
    assert [key for key in required if not env.get(key)] == []
    secrets = [
        prefix + field.upper() for field, info in cls.model_fields.items() if is_secret(info.annotation)
    ]
    baked = [key for key in secrets if key in raw and not _required_only(raw[key])]
    assert baked == [], "secrets must come from ${VAR:?...} with no default"


@pytest.mark.parametrize("name", SERVICES)
def test_service_settings_load_from_the_image_and_compose_environment(name, load_settings):
    """What the process sees in the container: the image's ENV, overridden by compose's environment."""
    image = build_image(parse_dockerfile(DOCKERFILE.read_text()), name)
    prefix = prefix_of(name)
    env = {
        **{k: v for k, v in image.env.items() if k.startswith(prefix)},
        **environment(compose()["services"][name]),
    }
    settings = load_settings(name, env)
    assert settings.http_host == "0.0.0.0"
    assert settings.log_format == "json"
    assert str(settings.config_path) == config_destination(image)


@pytest.mark.parametrize("name", SERVICES)
def test_service_healthcheck_is_its_listening_port_and_it_can_be_scaled(name, load_settings):
    service = compose()["services"][name]
    port = load_settings(name, environment(service)).http_port
    test = service["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), test
    assert [int(p) for p in READYZ_URL.findall(" ".join(test[1:]))] == [port]
    # `docker compose up --scale name=3` fails on a fixed container name or host port.
    assert "ports" not in service, f"{name}: only the proxy publishes ports"
    assert "container_name" not in service


@pytest.mark.parametrize("name", SERVICES)
def test_service_reads_the_mounted_hotline_file_and_optional_env_file(name, load_settings):
    service = compose()["services"][name]
    image = build_image(parse_dockerfile(DOCKERFILE.read_text()), name)
    target = config_destination(image)
    mounts = [v for v in service["volumes"] if isinstance(v, dict) and v["target"] == target]
    assert len(mounts) == 1, f"{name}: the hotline file is not mounted at {target}"
    assert mounts[0]["type"] == "bind" and mounts[0]["read_only"] is True
    assert (ROOT / mounts[0]["source"]).resolve() == (ROOT / CONFIG_FILE).resolve()
    env = {**{k: v for k, v in image.env.items() if k.startswith(prefix_of(name))}, **environment(service)}
    assert str(load_settings(name, env).config_path) == target
    # Tuning beyond .env; optional, and never sent into a build context (it may hold bot tokens).
    assert service["env_file"] == [{"path": ".env.services", "required": False}]
    ignored = DOCKERIGNORE.read_text().splitlines()
    assert ".env.*" in ignored or ".env.services" in ignored


def published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    out = []
    for entry in service.get("ports", []):
        if isinstance(entry, str):
            host_ip, host_port, container_port = entry.split(":")
        else:
            host_ip, host_port, container_port = entry["host_ip"], entry["published"], entry["target"]
        out.append((host_ip, int(host_port), int(container_port)))
    return out


def test_only_the_proxy_publishes_and_only_on_loopback():
    services = compose()["services"]
    publishing = {name for name, service in services.items() if service.get("ports")}
    assert publishing == {PROXY, "grafana"}, "everything else stays inside the compose network"
    assert services["grafana"]["profiles"] == ["monitoring"]
    for name in publishing:
        assert all(ip == "127.0.0.1" for ip, _, _ in published(services[name])), name


# --- tests: the Dockerfile


def test_dockerfile_selects_the_service_with_a_build_arg():
    df = parse_dockerfile(DOCKERFILE.read_text())
    assert "SERVICE" in df.global_args, "ARG SERVICE must come before the first FROM"
    assert df.global_args["SERVICE"] is None, "SERVICE has no default: a build must say which service"
    builder_runs = " ".join(a for s in df.stages for k, a in s.instructions if k == "RUN")
    assert '".[${SERVICE}]"' in builder_runs, "the builder installs only the service's extra"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert [name for name in SERVICES if name not in extras] == []


def test_dockerfile_base_images_are_pinned():
    df = parse_dockerfile(DOCKERFILE.read_text())
    names = df.stage_names()
    for stage in df.stages:
        base = expand(stage.base, {k: v for k, v in df.global_args.items() if k != "SERVICE"})
        if "SERVICE" in base:  # FROM service-${SERVICE}: must be one of our stages for every service
            targets = [expand(base, {"SERVICE": name}) for name in SERVICES]
            assert [t for t in targets if t not in names] == [], f"FROM {stage.base}"
        elif base not in names:
            assert is_pinned(base), f"FROM {stage.base} ({base}) must name a tag other than latest"


@pytest.mark.parametrize("name", SERVICES)
def test_image_runs_the_service_as_a_user_other_than_root(name):
    image = build_image(parse_dockerfile(DOCKERFILE.read_text()), name)
    user = image.last("USER")
    assert user is not None, "no USER: the image would run as root"
    assert user.split(":")[0] not in ("root", "0")


def config_destination(image: Image) -> str:
    for arguments in image.all("COPY"):
        words = [w for w in shlex.split(arguments) if not w.startswith("--")]
        if CONFIG_FILE in words[:-1]:
            destination = words[-1]
            return destination + Path(CONFIG_FILE).name if destination.endswith("/") else destination
    raise AssertionError(f"the image does not COPY {CONFIG_FILE}")


@pytest.mark.parametrize("name", SERVICES)
def test_image_command_port_and_configuration_match_the_service(name):
    image = build_image(parse_dockerfile(DOCKERFILE.read_text()), name)
    cls, prefix = settings_class(name), prefix_of(name)
    cmd = image.last("CMD")
    assert cmd is not None and json.loads(cmd) == ["python", "-m", f"services.{name}"], "CMD in exec form"
    default_port = cls.model_fields["http_port"].default
    assert image.env.get(prefix + "HTTP_PORT") == str(default_port)
    assert [p.split("/")[0] for e in image.all("EXPOSE") for p in e.split()] == [str(default_port)]
    assert image.env.get(prefix + "CONFIG_PATH") == config_destination(image)
    own = [key for key in image.env if key.startswith(prefix)]
    assert [key for key in own if key[len(prefix) :].lower() not in cls.model_fields] == []


class _Readyz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_image_healthcheck_asks_readyz_on_the_service_port(name, status, healthy):
    """Run the image's HEALTHCHECK command against a stand-in that answers /readyz with `status`."""
    image = build_image(parse_dockerfile(DOCKERFILE.read_text()), name)
    healthcheck = image.last("HEALTHCHECK")
    assert healthcheck is not None and "/readyz" in healthcheck
    command = json.loads(re.fullmatch(r"(?:--\S+\s+)*CMD\s+(\[.*\])", healthcheck, re.DOTALL)[1])
    assert command[0] == "python", "exec form with the image's python (no curl in slim)"

    handler = type("Handler", (_Readyz,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        env = {k: v for k, v in image.env.items() if not k.startswith(("PATH", "PYTHON"))}
        env |= {"PATH": os.environ["PATH"], prefix_of(name) + "HTTP_PORT": str(port)}
        result = subprocess.run(
            [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert (result.returncode == 0) == healthy, result.stderr.decode()[-500:]


# --- the broker definitions


def test_broker_definitions_file_is_the_topology_the_code_declares():
    """deploy/rabbitmq/definitions.json is generated from shared/topology.py; regenerate, never edit."""
    from deploy.definitions import DEFAULT_PATH, render

    assert DEFAULT_PATH == ROOT / "deploy" / "rabbitmq" / "definitions.json"
    assert DEFAULT_PATH.read_text() == render(), "run `python -m deploy.definitions write`, commit it"
    defs = json.loads(DEFAULT_PATH.read_text())
    assert set(defs) == {"exchanges", "queues", "bindings"}, "no users or permissions: they carry secrets"
    from shared import topology

    work = {q["name"]: q["arguments"] for q in defs["queues"]}
    for wq in topology.WORK_QUEUES:
        assert work[wq.name]["x-queue-type"] == "quorum"
        assert work[wq.name]["x-delivery-limit"] == topology.DELIVERY_LIMIT
        assert work[topology.dead_queue(wq.name)]["x-queue-type"] == "quorum"


def test_database_is_a_single_node_replica_set_the_services_name():
    mongo = compose()["services"][DATABASE]
    command = mongo["command"]
    assert command[0] == "mongod" and command[command.index("--replSet") + 1] == REPLICA_SET
    # With authentication on, mongod takes --replSet only with a key file; it is made at start.
    key_file = command[command.index("--keyFile") + 1]
    script = mongo["entrypoint"][2]
    assert key_file in script and "/dev/urandom" in script and 'exec docker-entrypoint.sh "$@"' in script
    assert key_file.startswith("/data/db/"), "the key lives in the data volume, not in the image"
    check = mongo["healthcheck"]["test"][1]
    member = r"rs\.initiate\(\{_id: '([^']+)', members: \[\{_id: 0, host: '([^']+)'\}\]\}\)"
    initiate = re.search(member, check)
    assert initiate, "the health check initiates the replica set on the first start"
    assert initiate[1] == REPLICA_SET
    assert initiate[2] == f"{DATABASE}:27017", "members are found by the name every container resolves"
    assert "isWritablePrimary" in check, "healthy only once writes are accepted"
    assert "$MONGO_INITDB_ROOT_PASSWORD" in check, "the password comes from the container's environment"


def test_broker_definitions_are_imported_once_with_the_service_credentials():
    services = compose()["services"]
    init = services[DEFINITIONS]
    command = init["command"]
    assert command[:4] == ["python", "-m", "deploy.definitions", "import"]
    options = dict(zip(command[4::2], command[5::2], strict=True))
    assert urlsplit(options["--url"]).hostname == BROKER
    assert options["--user"] == environment(services[BROKER])["RABBITMQ_DEFAULT_USER"]
    mount = [v for v in init["volumes"] if v["target"] == options["--file"]]
    assert len(mount) == 1 and mount[0]["read_only"] is True
    assert (ROOT / mount[0]["source"]).resolve() == ROOT / "deploy" / "rabbitmq" / "definitions.json"
    assert init["restart"] == "no", "a one-shot job"
    assert init["depends_on"] == {BROKER: {"condition": "service_healthy"}}
    raw = environment(raw_compose()["services"][DEFINITIONS])
    assert list(raw) == ["RABBITMQ_PASSWORD"] and _required_only(raw["RABBITMQ_PASSWORD"])
    assert environment(init)["RABBITMQ_PASSWORD"] == environment(services[BROKER])["RABBITMQ_DEFAULT_PASS"]


# --- the reverse proxy (deploy/proxy/nginx.conf)


@dataclass
class Block:
    name: str
    args: list[str]
    directives: list[list[str]] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)

    def get(self, name: str) -> list[list[str]]:
        return [d[1:] for d in self.directives if d[0] == name]

    def children(self, name: str) -> list[Block]:
        return [b for b in self.blocks if b.name == name]


def parse_nginx(text: str) -> Block:
    """nginx configuration as nested blocks: enough for directives, quoted strings and comments."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|[{};]|[^\s{};#"\']+|#[^\n]*', text)
    root = Block("", [])
    stack, words = [root], []
    for token in tokens:
        if token.startswith("#"):
            continue
        if token == ";":
            stack[-1].directives.append(words)
            words = []
        elif token == "{":
            block = Block(words[0], words[1:])
            stack[-1].blocks.append(block)
            stack.append(block)
            words = []
        elif token == "}":
            assert not words, f"unterminated directive {words}"
            stack.pop()
        else:
            words.append(token[1:-1] if token[0] in "\"'" else token)
    assert len(stack) == 1 and not words, "unbalanced braces"
    return root


def proxy_servers() -> dict[int, Block]:
    http = parse_nginx(NGINX_CONF.read_text()).children("http")[0]
    servers = {}
    for server in http.children("server"):
        (listen,) = server.get("listen")
        servers[int(listen[0].rsplit(":", 1)[-1])] = server
    return servers


def upstream_address(upstream: str) -> tuple[str, int]:
    http = parse_nginx(NGINX_CONF.read_text()).children("http")[0]
    (block,) = [b for b in http.children("upstream") if b.args == [upstream]]
    (server,) = block.get("server")
    host, port = server[0].rsplit(":", 1)
    # Re-resolved, so replicas added by --scale get traffic without a reload.
    assert "resolve" in server[1:] and block.get("zone"), f"upstream {upstream} is resolved once"
    return host, int(port)


def headers_sent(*levels: Block) -> dict[str, str]:
    """The proxy_set_header lines in force in the innermost of ``levels`` (http, server, location):
    nginx inherits them only into a block that sets none of its own."""
    for block in reversed(levels):
        if block.get("proxy_set_header"):
            return {h[0].lower(): h[1] for h in block.get("proxy_set_header")}
    return {}


def location(server: Block, path: str) -> Block | None:
    for loc in server.children("location"):
        if loc.args[-1] == path:
            return loc
    return None


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_proxy_routes_each_published_port_to_every_replica_of_its_service(name, load_settings):
    services = compose()["services"]
    port = load_settings(name, environment(services[name])).http_port
    assert (port, name) in {(8080, "store"), (8081, "chat_ingest")}, "the ports PRODUCT.md names"
    servers = proxy_servers()
    assert ("127.0.0.1", port, port) in published(services[PROXY])
    root = location(servers[port], "/")
    assert root is not None
    (target,) = root.get("proxy_pass")
    upstream = urlsplit(target[0]).hostname
    assert upstream_address(upstream) == (name, port)
    mount = [v for v in services[PROXY]["volumes"] if v["target"] == "/etc/nginx/nginx.conf"]
    assert len(mount) == 1 and (ROOT / mount[0]["source"]).resolve() == NGINX_CONF
    assert set(services[PROXY]["depends_on"]) == PUBLISHED


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_proxy_passes_the_websocket_upgrade_on_the_socket_path(name, load_settings):
    port = load_settings(name, environment(compose()["services"][name])).http_port
    path = WEBSOCKETS[name]
    source = (ROOT / "services" / name / "app.py").read_text()
    assert f'add_get("{path}"' in source, f"{name} no longer serves {path}"
    server = proxy_servers()[port]
    socket = location(server, path)
    assert socket is not None and socket.args[0] == "=", f"no location = {path}"
    http = parse_nginx(NGINX_CONF.read_text()).children("http")[0]
    headers = headers_sent(http, server, socket)
    assert headers["upgrade"] == "$http_upgrade"
    # The same Host as every other request (the service compares a socket's Origin with it); the
    # client's address only as X-Real-IP where the service counts sockets per source.
    assert headers["host"] == "$http_host"
    real_ip = "$remote_addr" if name == "chat_ingest" else ""
    assert headers["x-forwarded-for"] == "" and headers["x-real-ip"] == real_ip
    (upgrade_map,) = [m for m in http.children("map") if m.args[0] == "$http_upgrade"]
    assert headers["connection"] == upgrade_map.args[1]
    assert upgrade_map.get("default") == [["upgrade"]]
    assert (socket.get("proxy_http_version") or http.get("proxy_http_version")) == [["1.1"]]
    (timeout,) = socket.get("proxy_read_timeout")
    assert timeout[0].endswith(("h", "m")), "an idle socket outlives the 60 s default"


def test_proxy_keeps_metrics_inside_and_logs_no_client_address():
    http = parse_nginx(NGINX_CONF.read_text()).children("http")[0]
    assert http.get("access_log") == [["off"]], "an access log records clients' IP addresses"
    for port, server in proxy_servers().items():
        forwarded = headers_sent(http, server)
        assert forwarded.get("x-forwarded-for") == "" and forwarded.get("x-real-ip") == "", port
        for loc in server.children("location"):
            sent = headers_sent(http, server, loc)
            # Only the log-in route (the store's throttle counts failed log-ins per source, under
            # keyed hashes) and the chat's socket and widget (chat_ingest bounds sockets and new
            # chats per source, in memory) are told the client's address; a client-sent one is
            # replaced. Metrics answer 404 and tell no one.
            told = (port, *loc.args) in {(8080, "=", "/api/session"), (8081, "=", "/chat/ws"), (8081, "/")}
            real_ip = "$remote_addr" if told else ""
            assert sent.get("x-forwarded-for") == "" and sent.get("x-real-ip") == real_ip, loc.args
    store_env = compose()["services"]["store"]["environment"]
    assert store_env.get("STORE_TRUSTED_PROXIES"), "the store would count every log-in as the proxy's"
    chat_env = compose()["services"]["chat_ingest"]["environment"]
    assert chat_env.get("CHAT_INGEST_TRUSTED_PROXIES"), "the chat would count every client as the proxy"
    for port in (8080, 8081):
        metrics = location(proxy_servers()[port], "/metrics")
        assert metrics is not None and metrics.get("return") == [["404"]], port


LOG_LEVELS = ["debug", "info", "notice", "warn", "error", "crit", "alert", "emerg"]


def test_proxy_limits_each_source_on_chat_and_log_in_without_logging_addresses():
    """One address cannot hold every chat socket or hammer the log-in; a refusal is a 429, and
    nginx's line about it (which names the client's address) stays below the error log's level."""
    http = parse_nginx(NGINX_CONF.read_text()).children("http")[0]
    zones = {}
    for directive in http.get("limit_conn_zone") + http.get("limit_req_zone"):
        key, zone = directive[0], next(a for a in directive if a.startswith("zone="))
        zones[zone.split("=")[1].split(":")[0]] = key
    assert set(zones.values()) == {"$binary_remote_addr"}, zones
    assert http.get("limit_conn_status") == http.get("limit_req_status") == [["429"]]
    (error_log,) = http.get("error_log") or parse_nginx(NGINX_CONF.read_text()).get("error_log")
    threshold = LOG_LEVELS.index(error_log[-1])
    for directive in ("limit_conn_log_level", "limit_req_log_level"):
        (level,) = http.get(directive)
        assert LOG_LEVELS.index(level[0]) < threshold, f"{directive} would log client addresses"
    chat = proxy_servers()[8081]
    socket = location(chat, "/chat/ws")
    assert socket is not None
    (conn,) = socket.get("limit_conn")
    assert zones[conn[0]] == "$binary_remote_addr" and 1 <= int(conn[1]) <= 100
    assert socket.get("limit_req"), "WebSocket handshakes are not rate limited"
    for path, server in (("/", chat), ("/api/session", proxy_servers()[8080])):
        loc = location(server, path)
        assert loc is not None and loc.get("limit_req"), f"{path} is not rate limited per source"
        (target,) = loc.get("proxy_pass")
        assert target[0] in {"http://store", "http://chat_ingest"}
