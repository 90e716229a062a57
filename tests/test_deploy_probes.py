"""The deployment's probes, health checks and scrape targets, answered by the real service.

Real redis-server, worker and API processes (tests/service_helpers.Cluster) run with the
environment the cpu overlay gives its containers; every Kubernetes probe path must answer 200,
the images' health check must pass, and the metrics the Grafana dashboard queries must appear
in what Prometheus would scrape.
"""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest
from deploy_support import REPO, container_env, dashboard_expressions, find_object, kubectl, render_overlay
from service_helpers import Cluster, build_fixture_release, face_like, png_bytes, wait_until

pytestmark = pytest.mark.skipif(kubectl() is None, reason="kubectl with kustomize not installed (scripts/install-test-tools.sh)")

# Set per process by the test cluster (free ports, local Redis without a password) instead of
# the manifests' values.
LOCAL = {"PORTRAITSR_REDIS_URL", "PORTRAITSR_REDIS_PASSWORD_FILE", "PORTRAITSR_API_PORT", "PORTRAITSR_WORKER_METRICS_PORT"}


def deployment_container(objects, name: str) -> dict:
    (container,) = find_object(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    return container


def overrides_from(objects, name: str) -> dict[str, str]:
    env = container_env(objects, deployment_container(objects, name))
    return {key.removeprefix("PORTRAITSR_").lower(): value for key, value in env.items()
            if key.startswith("PORTRAITSR_") and key not in LOCAL}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    objects = render_overlay("cpu")
    workdir = tmp_path_factory.mktemp("deploy")
    cluster = Cluster(workdir, build_fixture_release(workdir / "release"))
    try:
        cluster.start_redis()
        worker = cluster.start_worker(**overrides_from(objects, "worker"))
        api_url = cluster.start_api(**overrides_from(objects, "api"))
        wait_until(lambda: httpx.get(f"{api_url}/readyz").status_code == 200, 30, message="api ready")
        yield {"objects": objects, "api": api_url, "worker": worker.metrics_url}
    finally:
        cluster.close()


def probe_paths(container: dict) -> list[str]:
    return [container[kind]["httpGet"]["path"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")]


@pytest.mark.parametrize("name", ["api", "worker"])
def test_every_kubernetes_probe_answers_200(deployed, name):
    container = deployment_container(deployed["objects"], name)
    for path in probe_paths(container):
        assert httpx.get(f"{deployed[name]}{path}", timeout=5).status_code == 200, path


@pytest.mark.parametrize("name", ["api", "worker"])
def test_image_health_check_passes(deployed, name):
    port = httpx.URL(deployed[name]).port
    variable = "PORTRAITSR_API_PORT" if name == "api" else "PORTRAITSR_WORKER_METRICS_PORT"
    result = subprocess.run([sys.executable, str(REPO / "docker" / "healthcheck.py"), name],
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), variable: str(port)},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_scraped_metrics_cover_the_dashboard(deployed):
    image = png_bytes(face_like(16, 16))
    response = httpx.post(f"{deployed['api']}/upscale", params={"scale": 8}, content=image, timeout=30)
    assert response.status_code == 200, response.text
    objects = deployed["objects"]
    scraped = ""
    for name in ("api", "worker"):
        annotations = find_object(objects, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        scraped += httpx.get(f"{deployed[name]}{annotations['prometheus.io/path']}", timeout=5).text
    exposed = set(re.findall(r"^(portraitsr_[a-z0-9_]+)", scraped, flags=re.MULTILINE))
    used = {name for expr in dashboard_expressions() for name in re.findall(r"portraitsr_[a-z0-9_]+", expr)}
    assert used <= exposed, used - exposed
