"""k8s/: both overlays render with kustomize, every object validates offline (Kubernetes schemas
from kubernetes-validate, the KEDA ScaledObject against its CRD's fields), and the manifests
agree with the service's settings, endpoints and images."""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

import pytest
import yaml
from deploy_support import (
    DOCKERFILES,
    OVERLAYS,
    REPO,
    container_env,
    dockerfile_stages,
    effective_settings,
    final_instructions,
    find_object,
    kubectl,
    pyproject,
    render_overlay,
    setting_env_names,
)

pytestmark = pytest.mark.skipif(kubectl() is None, reason="kubectl with kustomize not installed (scripts/install-test-tools.sh)")

# Oldest Kubernetes the manifests target, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.29.0", None)
PORTRAITSR = {"api": "api", "worker": "worker"}  # Deployment name -> container name


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def container(objects, deployment: str) -> dict:
    (c,) = [c for c in pod_spec(find_object(objects, "Deployment", deployment))["containers"] if c["name"] == PORTRAITSR[deployment]]
    return c


def settings_of(objects, deployment: str, monkeypatch):
    return effective_settings(container_env(objects, container(objects, deployment)), monkeypatch)


def named_port(c: dict, port) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in c["ports"] if p["name"] == port]
    return number


def labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def pod_templates(objects):
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_offline(overlay):
    import kubernetes_validate
    from jsonschema import Draft202012Validator

    objects = render_overlay(overlay)
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "StatefulSet",
            "PodDisruptionBudget", "NetworkPolicy", "ScaledObject"} <= kinds
    keda_schema = json.loads((REPO / "tests" / "schemas" / "keda-scaledobject-v1alpha1.schema.json").read_text())
    for obj in objects:
        if obj["apiVersion"] == "keda.sh/v1alpha1" and obj["kind"] == "TriggerAuthentication":
            assert {ref["parameter"] for ref in obj["spec"]["secretTargetRef"]} == {"username", "password"}
            continue
        if obj["apiVersion"] == "keda.sh/v1alpha1":
            errors = list(Draft202012Validator(keda_schema).iter_errors(obj))
            assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(obj, version or kubernetes_validate.latest_version(), strict=True)
        assert obj["kind"] == "Namespace" or obj["metadata"]["namespace"] == "portraitsr"


def test_keda_schema_rejects_what_the_crd_rejects():
    """The vendored schema is not a rubber stamp: a misspelt field and a numeric metadata value fail."""
    from jsonschema import Draft202012Validator

    schema = json.loads((REPO / "tests" / "schemas" / "keda-scaledobject-v1alpha1.schema.json").read_text())
    scaled_object = find_object(render_overlay("cpu"), "ScaledObject", "worker")
    misspelt = json.loads(json.dumps(scaled_object))
    misspelt["spec"]["maxReplicas"] = misspelt["spec"].pop("maxReplicaCount")
    numeric = json.loads(json.dumps(scaled_object))
    numeric["spec"]["triggers"][0]["metadata"]["lagCount"] = 16
    for bad in (misspelt, numeric):
        assert list(Draft202012Validator(schema).iter_errors(bad))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_trigger_reads_the_stream_and_group_the_workers_use(overlay, monkeypatch):
    objects = render_overlay(overlay)
    scaled_object = find_object(objects, "ScaledObject", "worker")
    settings = settings_of(objects, "worker", monkeypatch)
    assert find_object(objects, "Deployment", scaled_object["spec"]["scaleTargetRef"]["name"])
    (trigger,) = scaled_object["spec"]["triggers"]
    assert trigger["type"] == "redis-streams"
    metadata = trigger["metadata"]
    assert metadata["stream"] == settings.stream
    assert metadata["consumerGroup"] == settings.consumer_group
    # KEDA connects to the Redis the workers use (same host, port and database).
    url = urlparse(settings.redis_url)
    assert metadata["address"] == f"{url.hostname}:{url.port or 6379}"
    assert metadata["databaseIndex"] == (url.path.strip("/") or "0")
    redis_service = find_object(objects, "Service", url.hostname.split(".")[0])
    assert url.hostname.split(".")[1] == redis_service["metadata"]["namespace"]
    assert url.port == redis_service["spec"]["ports"][0]["port"]
    # Scale on consumer-group lag, at least one full batch of it per worker.
    assert int(metadata["lagCount"]) >= settings.max_batch_size
    # Never to zero: the API is ready only while a warmed worker is alive.
    assert scaled_object["spec"]["minReplicaCount"] >= 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_environment_variables_are_service_settings(overlay, monkeypatch):
    objects = render_overlay(overlay)
    known = setting_env_names()
    for config_map in (o for o in objects if o["kind"] == "ConfigMap"):
        assert set(config_map["data"]) <= known, set(config_map["data"]) - known
    for deployment in PORTRAITSR:
        env = container_env(objects, container(objects, deployment))
        names = {k for k in env if k.startswith("PORTRAITSR_")}
        assert names <= known, f"{deployment}: {names - known} are not ServiceSettings fields"
        settings_of(objects, deployment, monkeypatch)  # raises on an invalid value


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_ports_are_the_service_endpoints(overlay, monkeypatch):
    from service.http.app import create_app, route_paths

    objects = render_overlay(overlay)
    worker_source = (REPO / "service" / "queue" / "worker.py").read_text()
    for deployment in PORTRAITSR:
        c = container(objects, deployment)
        settings = settings_of(objects, deployment, monkeypatch)
        if deployment == "api":
            port = settings.api_port
            endpoints = route_paths(create_app(settings))
        else:
            port = settings.worker_metrics_port
            # The worker's three GET routes, as it hands them to its health server.
            endpoints = set(re.findall(r'"(/[a-z]+)": self\._', worker_source))
        assert {"/livez", "/readyz", "/metrics"} <= endpoints
        assert [p["containerPort"] for p in c["ports"]] == [port]
        probes = {kind: c[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
        assert probes["readinessProbe"]["path"] == "/readyz"
        assert probes["livenessProbe"]["path"] == "/livez"
        for probe in probes.values():
            assert probe["path"] in endpoints and named_port(c, probe["port"]) == port
        annotations = find_object(objects, "Deployment", deployment)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port) and annotations["prometheus.io/path"] in endpoints
    api_service = find_object(objects, "Service", "api")
    assert named_port(container(objects, "api"), api_service["spec"]["ports"][0]["targetPort"]) == settings_of(
        objects, "api", monkeypatch).api_port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_grace_outlasts_the_longest_batch(overlay, monkeypatch):
    objects = render_overlay(overlay)
    for deployment in PORTRAITSR:
        settings = settings_of(objects, deployment, monkeypatch)
        spec = pod_spec(find_object(objects, "Deployment", deployment))
        grace = spec["terminationGracePeriodSeconds"]
        pre_stop = container(objects, deployment).get("lifecycle", {}).get("preStop")
        pre_stop_s = int(pre_stop["exec"]["command"][-1]) if pre_stop else 0
        # A job older than job_deadline_s is never run, so no batch in hand outlives it; the API
        # drains waiting requests for job_deadline_s + 1 s after its preStop sleep.
        assert grace > pre_stop_s + settings.job_deadline_s + 1, (deployment, grace)
    assert container(objects, "api")["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_unprivileged_with_read_only_roots_and_limits(overlay, monkeypatch):
    objects = render_overlay(overlay)
    image_user = {}
    for dockerfile in DOCKERFILES.values():
        stages = dockerfile_stages(dockerfile)
        for target in stages:
            users = final_instructions(stages, target, "USER")
            if users:
                image_user[target] = users[-1]
    for obj in pod_templates(objects):
        spec = pod_spec(obj)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] > 0
        assert pod_security["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in spec["containers"]:
            security = c["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), (obj["metadata"]["name"], kind)
            tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], "a writable /tmp on the read-only root"
            image = c["image"].split(":")[0]
            if image.startswith("portraitsr/"):
                # The uid the image was built with, so runAsNonRoot holds for the real image.
                uid, _, gid = image_user[image.split("/")[1]].partition(":")
                assert (pod_security["runAsUser"], pod_security["runAsGroup"]) == (int(uid), int(gid or uid))
    worker = container(objects, "worker")
    threads = settings_of(objects, "worker", monkeypatch).intra_op_threads
    assert 0 < threads <= float(worker["resources"]["limits"]["cpu"]), "ONNX Runtime threads beyond the CPU limit"


def test_gpu_overlay_puts_workers_on_gpus_and_cpu_overlay_does_not(monkeypatch):
    gpu, cpu = render_overlay("gpu"), render_overlay("cpu")
    worker = container(gpu, "worker")
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    spec = pod_spec(find_object(gpu, "Deployment", "worker"))
    assert spec["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert settings_of(gpu, "worker", monkeypatch).execution_provider == "cuda"
    assert worker["image"].split(":")[0] == "portraitsr/worker-gpu"

    assert "nvidia.com/gpu" not in yaml.safe_dump_all(cpu)
    assert settings_of(cpu, "worker", monkeypatch).execution_provider == "cpu"
    assert container(cpu, "worker")["image"].split(":")[0] == "portraitsr/worker-cpu"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_the_ones_compose_builds_at_the_package_version(overlay):
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    built = {s["image"] for s in compose.values() if "build" in s}
    version = pyproject()["project"]["version"]
    for obj in pod_templates(render_overlay(overlay)):
        for c in pod_spec(obj)["containers"]:
            if c["image"].startswith("portraitsr/"):
                assert c["image"] in built and c["image"].endswith(f":{version}"), c["image"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_api_workers_and_keda_reach_redis(overlay):
    objects = render_overlay(overlay)
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy"]
    redis = find_object(objects, "StatefulSet", "redis")
    pods = {o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"] for o in pod_templates(objects)}
    selected = {name for name, labels in pods.items() if labels_match(policy["spec"]["podSelector"], labels)}
    assert selected == {"redis"} and policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    admitted, outside = set(), []
    for peer in rule["from"]:
        if "namespaceSelector" in peer:
            outside.append(peer)
            continue
        admitted |= {name for name, labels in pods.items() if labels_match(peer["podSelector"], labels)}
    assert admitted == set(PORTRAITSR)
    # The only peer outside the namespace is the KEDA operator (it reads the consumer-group lag).
    (keda,) = outside
    assert keda["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "keda-operator"}
    redis_port = redis["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert [p["port"] for p in rule["ports"]] == [redis_port]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_and_autoscalers_select_real_workloads(overlay):
    objects = render_overlay(overlay)
    pods = {o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"] for o in pod_templates(objects)}
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    covered = {name for pdb in budgets for name, labels in pods.items() if labels_match(pdb["spec"]["selector"], labels)}
    assert covered == set(PORTRAITSR)
    hpa = find_object(objects, "HorizontalPodAutoscaler", "api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "api" and hpa["spec"]["minReplicas"] >= 2
    api_budget = find_object(objects, "PodDisruptionBudget", "api")
    assert api_budget["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "the budget would block every drain"
    # Workers are scaled by KEDA alone: no second autoscaler on them.
    assert [o["spec"]["scaleTargetRef"]["name"] for o in objects if o["kind"] == "HorizontalPodAutoscaler"] == ["api"]
    redis = find_object(objects, "StatefulSet", "redis")
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] in {
        m["name"] for m in redis["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_access_is_the_services_acl_user_with_the_secret_password(overlay, monkeypatch, tmp_path):
    """Redis, the API, the workers and KEDA all take the password from the Secret portraitsr-redis;
    Redis' start script, run here against a real redis-server, allows that user exactly
    protocol.ACL_COMMANDS and turns the default user off."""
    import os
    import shutil
    import socket
    import subprocess
    import time

    import redis as redis_client
    from service_helpers import free_port, redis_server_executable

    from service.queue.protocol import ACL_COMMANDS

    objects = render_overlay(overlay)
    redis_set = find_object(objects, "StatefulSet", "redis")
    (redis_container,) = pod_spec(redis_set)["containers"]
    env = {item["name"]: item["value"] for item in redis_container["env"]}
    assert env["SERVICE_ACL_COMMANDS"].split() == ACL_COMMANDS.split()
    for obj in (redis_set, find_object(objects, "Deployment", "api"), find_object(objects, "Deployment", "worker")):
        secrets = [v["secret"]["secretName"] for v in pod_spec(obj)["volumes"] if "secret" in v]
        assert secrets == ["portraitsr-redis"], obj["metadata"]["name"]
    for deployment in PORTRAITSR:
        settings = settings_of(objects, deployment, monkeypatch)
        mounts = {m["name"]: m["mountPath"] for m in container(objects, deployment)["volumeMounts"]}
        assert str(settings.redis_password_file).startswith(mounts["redis-secret"] + "/")
        assert urlparse(settings.redis_url).username == "portraitsr"
    scaled_object = find_object(objects, "ScaledObject", "worker")
    authentication = find_object(objects, "TriggerAuthentication", scaled_object["spec"]["triggers"][0]["authenticationRef"]["name"])
    assert {ref["name"] for ref in authentication["spec"]["secretTargetRef"]} == {"portraitsr-redis"}

    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    (secret_dir / "password").write_text("the-password-from-the-secret")
    shell, flag, script, name = redis_container["command"]
    script = script.replace("/etc/portraitsr-redis", str(secret_dir)).replace("/tmp/users.acl", str(tmp_path / "users.acl"))
    script = script.replace("exec redis-server", f"exec {redis_server_executable()}")
    args = [a if a != "/data" else str(tmp_path) for a in redis_container["args"]]
    port = free_port()
    process = subprocess.Popen([shutil.which("sh"), flag, script, name, *args, "--port", str(port)],
                               env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            time.sleep(0.1)
        service = redis_client.Redis(port=port, username="portraitsr", password="the-password-from-the-secret")
        assert service.ping() and service.xadd("portraitsr:jobs", {"a": "b"})
        with pytest.raises(redis_client.exceptions.NoPermissionError):
            service.flushall()
        with pytest.raises(redis_client.AuthenticationError):
            redis_client.Redis(port=port).ping()
    finally:
        process.kill()
        process.wait()


def test_the_api_keys_component_gates_the_api_with_a_secret(tmp_path, monkeypatch):
    import os
    import subprocess

    import kubernetes_validate
    from deploy_support import load_yaml_documents

    relative = lambda path: os.path.relpath(REPO / path, tmp_path)  # noqa: E731 - kustomize refuses absolute paths
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {relative('k8s/overlays/cpu')}\ncomponents:\n  - {relative('k8s/components/api-keys')}\n"
    )
    result = subprocess.run([kubectl(), "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    objects = tuple(load_yaml_documents(result.stdout))
    api = find_object(objects, "Deployment", "api")
    kubernetes_validate.validate(api, kubernetes_validate.latest_version(), strict=True)
    settings = settings_of(objects, "api", monkeypatch)
    volumes = {v["name"]: v for v in pod_spec(api)["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container(objects, "api")["volumeMounts"]}
    assert volumes["api-keys"]["secret"]["secretName"] == "portraitsr-api-keys"
    assert str(settings.api_keys_file).startswith(mounts["api-keys"] + "/")
    assert api["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "false"  # it would get 401
    assert settings_of(objects, "worker", monkeypatch).api_keys_file is None
