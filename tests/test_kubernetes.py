"""contrib/kubernetes, validated offline: no cluster can run here, so every manifest is checked
against the Kubernetes schemas that `kubernetes-validate` ships (strict: unknown fields are
errors), and the pieces that must agree with each other are checked to agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from supervisor.config import load_config

from .conftest import REPO

K8S = REPO / "contrib" / "kubernetes"
MANIFESTS = sorted(K8S.glob("*.yaml"))
ENV = {"MCP_SUPERVISOR_TOKEN": "t", "MCP_SUPERVISOR_REDIS_URL": "redis://mcp-redis:6379/0"}


def documents() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
            for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(kind: str) -> dict[str, Any]:
    matches = [doc for _, doc in documents() if doc["kind"] == kind]
    assert len(matches) >= 1, kind
    return matches[0]


@pytest.mark.parametrize(("where", "doc"), documents(), ids=[w for w, _ in documents()])
def test_manifest_matches_the_kubernetes_schema(where: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_the_configmap_carries_the_fleet_the_image_installs(tmp_path: Path) -> None:
    """configmap.yaml's fleet.toml is byte for byte contrib/kubernetes/fleet.toml (which the
    Containerfile installs), and it is a valid fleet for our own loader."""
    text = by_kind("ConfigMap")["data"]["fleet.toml"]
    assert text == (K8S / "fleet.toml").read_text()
    assert "COPY contrib/kubernetes/fleet.toml /etc/mcp-supervisor/fleet.toml" in (
        K8S / "Containerfile").read_text()
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    config = load_config(path, ENV)
    assert config.cache.backend == "redis"
    assert config.http.token == "t" and not config.http.is_loopback()
    assert config.supervisor.drain_grace > 0


def test_the_grace_period_covers_the_drain() -> None:
    """Kubernetes SIGKILLs after terminationGracePeriodSeconds: it must outlast the drain grace,
    the drain timeout and stopping the children, or a rollout cuts calls short."""
    config = load_config(K8S / "fleet.toml", ENV)
    spec = by_kind("Deployment")["spec"]["template"]["spec"]
    stop = max(server.stop_timeout for server in config.servers.values())
    assert spec["terminationGracePeriodSeconds"] > (
        config.supervisor.drain_grace + config.supervisor.drain_timeout + stop)
    container = spec["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # The pod is out of the Service before its door closes: one failed probe within the grace.
    probe = container["readinessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] < config.supervisor.drain_grace


def test_the_deployment_reads_the_secret_and_the_configmap_it_ships_with() -> None:
    spec = by_kind("Deployment")["spec"]["template"]["spec"]
    secret = by_kind("Secret")["metadata"]["name"]
    config_map = by_kind("ConfigMap")["metadata"]["name"]
    container = spec["containers"][0]
    assert {"secretRef": {"name": secret}} in container["envFrom"]
    assert {"name": "fleet", "configMap": {"name": config_map}} in spec["volumes"]
    assert set(by_kind("Secret")["stringData"]) >= {"MCP_SUPERVISOR_TOKEN"}
