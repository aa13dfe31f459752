"""deploy/k8s agrees with Kubernetes' shapes and with the code, the way test_compose.py checks compose.

No cluster runs here, and no JSON schema of the Kubernetes API is packaged for PyPI or the Go module
proxy (k8s.io/api has none), so each resource is checked structurally: the apiVersion its kind
lives in, the keys the API requires, and every cross reference (selectors, Services, Ingress
backends, autoscaler targets, Secrets made by the operators). Each Deployment's command, port,
variable names, probe paths and user are checked against its Settings class and the Dockerfile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.local.services import new_master_key
from tests.unit.test_compose import (
    DOCKERFILE,
    SERVICES,
    build_image,
    config_destination,
    is_pinned,
    is_secret,
    load_settings,  # noqa: F401 (a fixture)
    parse_dockerfile,
    prefix_of,
    settings_class,
)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"

API_VERSIONS = {
    "Deployment": "apps/v1",
    "Service": "v1",
    "ConfigMap": "v1",
    "Ingress": "networking.k8s.io/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "PodDisruptionBudget": "policy/v1",
    "RabbitmqCluster": "rabbitmq.com/v1beta1",
    "MongoDBCommunity": "mongodbcommunity.mongodb.com/v1",
}
# Secrets the Deployments read: ours (docs/operations.md says how to create it) and the one the
# MongoDB operator writes for the user of mongodb.yaml.
OUR_SECRET = "hotline-secrets"
SCALED = {"chat_ingest", "dispatcher"}
# What the Ingress must route: the services people reach from outside.
PUBLIC = {"store": ["/api/events", "/api/session", "/"], "chat_ingest": ["/chat/ws", "/chat/widget.js"]}


def k8s_name(service: str) -> str:
    return service.replace("_", "-")


def manifests() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict), f"{path.name}: empty or not a mapping"
            docs.append((path.name, doc))
    return docs


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def container(service: str) -> dict[str, Any]:
    (c,) = resources("Deployment")[k8s_name(service)]["spec"]["template"]["spec"]["containers"]
    return c


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    files = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files


def test_every_resource_has_the_shape_its_kind_requires():
    seen = set()
    for file, doc in manifests():
        kind = doc.get("kind")
        assert kind in API_VERSIONS, f"{file}: unexpected kind {kind}"
        assert doc.get("apiVersion") == API_VERSIONS[kind], f"{file}: {kind}"
        assert set(doc) <= {"apiVersion", "kind", "metadata", "spec", "data"}, f"{file}: {set(doc)}"
        name = doc["metadata"]["name"]
        assert name.replace("-", "").isalnum() and name == name.lower() and len(name) <= 63, name
        assert (kind, name) not in seen, f"{kind} {name} twice"
        seen.add((kind, name))
        assert ("data" if kind == "ConfigMap" else "spec") in doc, f"{file}: {kind} {name}"
    kinds = {kind for kind, _ in seen}
    assert kinds == set(API_VERSIONS)


def test_deployments_select_their_own_pods_and_services_reach_them():
    deployments = resources("Deployment")
    assert set(deployments) == {k8s_name(s) for s in SERVICES}
    services = resources("Service")
    for name, dep in deployments.items():
        spec = dep["spec"]
        selector = spec["selector"]["matchLabels"]
        labels = spec["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        service = services[name]
        assert service["spec"]["selector"].items() <= labels.items()
        (c,) = spec["template"]["spec"]["containers"]
        port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
        (sport,) = service["spec"]["ports"]
        assert sport["targetPort"] in port_names and sport["port"] == port_names[sport["targetPort"]]
        others = [n for n, d in deployments.items() if n != name]
        for other in others:
            other_labels = deployments[other]["spec"]["template"]["metadata"]["labels"]
            assert not selector.items() <= other_labels.items(), f"{name} selects {other}'s pods"


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_runs_the_service_with_its_settings(name, load_settings):  # noqa: F811
    c = container(name)
    cls, prefix = settings_class(name), prefix_of(name)
    assert c["command"] == ["python", "-m", f"services.{name}"]
    assert is_pinned(c["image"])
    env = {e["name"]: e for e in c["env"]}
    assert [
        n for n in env if not n.startswith(prefix) or n[len(prefix) :].lower() not in cls.model_fields
    ] == []
    required = [prefix + f.upper() for f, info in cls.model_fields.items() if info.is_required()]
    assert [n for n in required if n not in env] == []
    # A secret comes from a Secret, never from a value written into the manifest.
    secrets = [prefix + f.upper() for f, info in cls.model_fields.items() if is_secret(info.annotation)]
    for n in secrets:
        if n in env:
            assert "secretKeyRef" in env[n].get("valueFrom", {}), f"{n} is not read from a Secret"
    # The settings load from what the pod sees (references filled in with plausible values).
    filled = {
        "AMQP_URL": "amqp://u:p@hotline-rabbitmq:5672/",
        "MONGO_URL": "mongodb://u:p@hotline-mongodb-svc:27017/?replicaSet=hotline-mongodb",
        "TELEGRAM_BOTS": "",
        "CLIENT_KEY_SECRET": "k" * 64,
        "MASTER_KEY": new_master_key(),
        "IMAP_PORT": "993",
        "SMTP_PORT": "587",
        "SMTP_SECURITY": "starttls",
        "LOG_LEVEL": "info",
        "LINE": "113",
    }
    configmap = resources("ConfigMap")["hotline-env"]["data"]

    def value(name: str, e: dict[str, Any]) -> str:
        if "value" in e:
            return str(e["value"])
        ref = e.get("valueFrom", {}).get("configMapKeyRef")
        if ref is not None and ref["name"] == "hotline-env":
            return str(configmap[ref["key"]])
        return filled.get(name[len(prefix) :], "x@example.org")

    values = {n: value(n, e) for n, e in env.items()}
    settings = load_settings(name, values)
    assert settings.http_host == "0.0.0.0" and settings.log_format == "json"
    (port,) = c["ports"]
    assert port["containerPort"] == settings.http_port == cls.model_fields["http_port"].default
    image = build_image(parse_dockerfile(DOCKERFILE.read_text()), name)
    assert str(settings.config_path) == config_destination(image)
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    config_dir = str(Path(config_destination(image)).parent)
    assert mounts[config_dir]["readOnly"] is True
    volumes = {
        v["name"]: v for v in resources("Deployment")[k8s_name(name)]["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes[mounts[config_dir]["name"]]["configMap"]["name"] == "hotline-config"
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in env.values()
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs <= {OUR_SECRET, mongo_connection_secret()}


def mongo_connection_secret() -> str:
    """The Secret the MongoDB Community Operator writes: <resource>-<user's db>-<user>."""
    (mongo,) = resources("MongoDBCommunity").values()
    (user,) = mongo["spec"]["users"]
    return f"{mongo['metadata']['name']}-{user['db']}-{user['name']}"


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_probes_health_and_runs_as_the_image_user(name):
    c = container(name)
    pod = resources("Deployment")[k8s_name(name)]["spec"]["template"]["spec"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", "a lost broker must not restart the pod"
    port_names = {p["name"] for p in c["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in port_names, probe
    health = (ROOT / "shared" / "health.py").read_text()
    assert '"/readyz"' in health and '"/healthz"' in health
    image = build_image(parse_dockerfile(DOCKERFILE.read_text()), name)
    uid = int(image.last("USER").split(":")[0])
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == uid
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"memory"} <= set(
        c["resources"]["limits"]
    )
    # SIGTERM drains for <PREFIX>SHUTDOWN_TIMEOUT; Kubernetes must wait longer before SIGKILL.
    shutdown = settings_class(name).model_fields["shutdown_timeout"].default
    assert pod["terminationGracePeriodSeconds"] > shutdown


def test_autoscalers_scale_chat_ingest_and_dispatcher():
    hpas = resources("HorizontalPodAutoscaler")
    deployments = resources("Deployment")
    targets = {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()}
    assert targets == {k8s_name(s) for s in SCALED}
    for hpa in hpas.values():
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment") and ref["name"] in deployments
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        assert hpa["spec"]["metrics"], "an autoscaler needs a metric"


def test_disruption_budgets_keep_a_replica_of_every_scaled_service():
    budgets = resources("PodDisruptionBudget")
    deployments = resources("Deployment")
    for name, dep in deployments.items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        matching = [
            b for b in budgets.values() if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        if dep["spec"]["replicas"] == 1:
            # A budget of minAvailable 1 on one replica would block every node drain.
            assert matching == [], name
            assert dep["spec"].get("strategy", {}).get("type") == "Recreate", (
                "never two watchers of a mailbox"
            )
        else:
            assert len(matching) == 1 and matching[0]["spec"]["minAvailable"] == 1, name
    assert deployments["email-ingest"]["spec"]["replicas"] == 1


def ingress_routes() -> dict[str, list[tuple[str, str, str]]]:
    (ingress,) = resources("Ingress").values()
    routes: dict[str, list[tuple[str, str, str]]] = {}
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            backend = p["backend"]["service"]
            routes.setdefault(backend["name"], []).append((p["path"], p["pathType"], backend["port"]["name"]))
    return routes


def routed(path: str, rules: list[tuple[str, str, str]]) -> bool:
    return any(
        path == p if kind == "Exact" else path == p or path.startswith(p.rstrip("/") + "/")
        for p, kind, _ in rules
    )


def test_ingress_routes_people_to_the_console_and_chat_but_not_to_health_or_metrics():
    routes = ingress_routes()
    services = resources("Service")
    assert set(routes) == {k8s_name(s) for s in PUBLIC}
    for name, paths in PUBLIC.items():
        rules = routes[k8s_name(name)]
        ports = {p["name"] for p in services[k8s_name(name)]["spec"]["ports"]}
        assert all(port in ports for _, _, port in rules)
        assert [p for p in paths if not routed(p, rules)] == [], name
        assert [p for p in ("/metrics", "/readyz", "/healthz") if routed(p, rules)] == [], name
        sources = " ".join(p.read_text() for p in (ROOT / "services" / name).glob("*.py"))
        for p in paths:
            assert f'"{p}"' in sources or p == "/chat/widget.js", f"{name} no longer serves {p}"
    (ingress,) = resources("Ingress").values()
    annotations = ingress["metadata"]["annotations"]
    # The socket outlives nginx's 60 s default between frames.
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
    assert hosts == {r["host"] for r in ingress["spec"]["rules"]}, "every host has TLS"


def test_broker_and_database_are_three_node_clusters():
    (rabbit,) = resources("RabbitmqCluster").values()
    assert rabbit["spec"]["replicas"] == 3, "quorum queues keep a majority when one node dies"
    assert rabbit["spec"]["image"] == "rabbitmq:3.13-management", "the version compose runs"
    (mongo,) = resources("MongoDBCommunity").values()
    assert mongo["spec"]["members"] == 3 and mongo["spec"]["type"] == "ReplicaSet"
    assert mongo["spec"]["version"].startswith("7."), "the MongoDB major version compose runs"
    (user,) = mongo["spec"]["users"]
    assert {"name": "readWrite", "db": "hotline"} in user["roles"]
    assert set(user["passwordSecretRef"]) == {"name"}, "the password lives in a Secret"
    configmap = resources("ConfigMap")["hotline-env"]["data"]
    for name in SERVICES:
        env = {e["name"]: e for e in container(name)["env"]}
        keys = {
            e["valueFrom"]["configMapKeyRef"]["key"]
            for e in env.values()
            if "configMapKeyRef" in e.get("valueFrom", {})
        }
        assert keys <= set(configmap), f"{name} reads keys hotline-env lacks"
