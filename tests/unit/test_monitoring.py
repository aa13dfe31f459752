"""deploy/prometheus/prometheus.yml and deploy/grafana/hotline-dashboard.json agree with the code.

Prometheus must scrape every service on the port the service listens on, and every dashboard query
may name only metrics the services (or RabbitMQ's Prometheus plugin) export, so a renamed metric or
a moved port fails here instead of as an empty panel on the night someone needs it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_compose import SERVICES, compose, environment, settings_class

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "hotline-dashboard.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"

# What the services export (issue 8; docs/operations.md explains each).
SERVICE_METRICS = {
    "hotline_published_total": "counter",
    "hotline_consumed_total": "counter",
    "hotline_handle_seconds": "histogram",
    "hotline_queue_waiting": "gauge",
    "hotline_queue_oldest_wait_seconds": "gauge",
    "hotline_claims_total": "counter",
    "hotline_smtp_failures_total": "counter",
    "hotline_imap_lag_seconds": "gauge",
    "hotline_chat_sockets": "gauge",
    "hotline_mail_ingested_total": "counter",
    "hotline_mail_sent_total": "counter",
}
# From RabbitMQ's rabbitmq_prometheus plugin (/metrics and /metrics/detailed?family=queue_coarse_metrics).
RABBITMQ_METRICS = {
    "rabbitmq_global_messages_dead_lettered_delivery_limit_total",
    "rabbitmq_detailed_queue_messages",
}
RABBITMQ_PROMETHEUS_PORT = 15692

PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right",
    "rate", "irate", "increase", "histogram_quantile", "and", "or", "unless", "offset", "bool",
}  # fmt: skip


def prometheus() -> dict[str, Any]:
    doc = yaml.safe_load(PROMETHEUS.read_text())
    assert isinstance(doc, dict)
    return doc


def jobs() -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in prometheus()["scrape_configs"]}


def dashboard() -> dict[str, Any]:
    doc = json.loads(DASHBOARD.read_text())
    assert isinstance(doc, dict)
    return doc


def expressions() -> list[tuple[str, str]]:
    return [(panel["title"], t["expr"]) for panel in dashboard()["panels"] for t in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: what is left once strings, label matchers, ranges,
    grouping clauses, numbers and PromQL's own words are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', " ", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return names - PROMQL_WORDS


def allowed_names() -> set[str]:
    names = set(RABBITMQ_METRICS)
    for name, kind in SERVICE_METRICS.items():
        names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
    return names


@pytest.mark.parametrize("name", SERVICES)
def test_prometheus_scrapes_every_replica_of_each_service_on_its_port(name):
    service = compose()["services"][name]
    prefix = settings_class(name).model_config["env_prefix"]
    port = int(environment(service)[prefix + "HTTP_PORT"])
    assert port == settings_class(name).model_fields["http_port"].default
    job = jobs()[name]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # DNS service discovery: one target per replica of a scaled service.
    assert job["dns_sd_configs"] == [
        {
            "names": [name],
            "type": "A",
            "port": port,
            "refresh_interval": job["dns_sd_configs"][0]["refresh_interval"],
        }
    ]
    assert "/metrics" in (ROOT / "shared" / "health.py").read_text()


def test_prometheus_scrapes_rabbitmq_and_nothing_unknown():
    found = jobs()
    assert set(found) == {*SERVICES, "rabbitmq", "rabbitmq_queues"}
    for name in ("rabbitmq", "rabbitmq_queues"):
        assert found[name]["static_configs"] == [{"targets": [f"rabbitmq:{RABBITMQ_PROMETHEUS_PORT}"]}]
    assert found["rabbitmq_queues"]["metrics_path"] == "/metrics/detailed"
    assert found["rabbitmq_queues"]["params"] == {"family": ["queue_coarse_metrics"]}
    assert "rabbitmq" in compose()["services"]


def test_every_dashboard_query_names_only_exported_metrics():
    allowed = allowed_names()
    unknown = {(title, name) for title, expr in expressions() for name in metric_names(expr) - allowed}
    assert unknown == set()


def test_the_dashboard_shows_every_service_metric():
    used = {name for _, expr in expressions() for name in metric_names(expr)}
    missing = [name for name in SERVICE_METRICS if not used & {name, f"{name}_bucket"}]
    assert missing == []
    quantiles = {q for _, expr in expressions() for q in re.findall(r"histogram_quantile\((0\.\d+),", expr)}
    assert {"0.5", "0.99"} <= quantiles, "processing time as p50 and p99"
    dead = [expr for title, expr in expressions() if title == "Dead-lettered messages"]
    assert any('outcome="rejected"' in e for e in dead)
    assert any("delivery_limit" in e for e in dead)


@pytest.mark.parametrize("name", sorted(SERVICE_METRICS))
def test_every_service_metric_is_defined_in_the_code(name):
    sources = [p for d in ("shared", "conversations", "services") for p in (ROOT / d).rglob("*.py")]
    assert any(f'"{name}"' in p.read_text() for p in sources), f"no service registers {name}"


def test_grafana_loads_the_dashboard_from_prometheus():
    services = compose()["services"]
    (datasource,) = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090" and "prometheus" in services
    uids = {t["datasource"]["uid"] for panel in dashboard()["panels"] for t in panel["targets"]}
    uids |= {panel["datasource"]["uid"] for panel in dashboard()["panels"]}
    assert uids == {datasource["uid"]}
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "hotline.yml").read_text())["providers"]
    mounts = {v["target"]: v["source"] for v in services["grafana"]["volumes"] if isinstance(v, dict)}
    dashboard_mount = [t for t, s in mounts.items() if (ROOT / s).resolve() == DASHBOARD]
    assert len(dashboard_mount) == 1 and Path(dashboard_mount[0]).parent == Path(provider["options"]["path"])
    assert (ROOT / mounts["/etc/grafana/provisioning"]).resolve() == PROVISIONING
    prom = services["prometheus"]
    config = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file="))
    assert any(
        isinstance(v, dict) and v["target"] == config and (ROOT / v["source"]).resolve() == PROMETHEUS
        for v in prom["volumes"]
    )
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
