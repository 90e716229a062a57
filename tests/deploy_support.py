"""Helpers for the deployment tests: repository files, tools, the service's real settings and metrics.

Names (setting fields, env prefix, metric names, stream names) are always read from the service
code, never repeated here, so a rename in ``service/`` fails the deployment tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
TOOLS_BIN = REPO / ".cache" / "tools" / "bin"  # where scripts/install-test-tools.sh puts kubectl
VENV_BIN = REPO / ".venv" / "bin"
OVERLAYS = ("cpu", "gpu")


def find_tool(name: str) -> str | None:
    """An executable from PATH, the project's tool cache or the virtualenv's bin."""
    return shutil.which(name) or shutil.which(name, path=f"{TOOLS_BIN}{os.pathsep}{VENV_BIN}")


@cache
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def load_yaml_documents(text: str) -> list[dict]:
    return [document for document in yaml.safe_load_all(text) if document]


# Service settings --------------------------------------------------------------------------------
def settings_class():
    from service.core.settings import ServiceSettings

    return ServiceSettings


def env_prefix() -> str:
    return settings_class().model_config["env_prefix"]


def setting_env_names() -> set[str]:
    """Every environment variable the service reads: prefix + field name, upper case."""
    prefix = env_prefix()
    return {f"{prefix}{name}".upper() for name in settings_class().model_fields}


def service_env(env: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if key.startswith(env_prefix())}


def effective_settings(env: dict[str, str], monkeypatch):
    """The ServiceSettings a process with ``env`` would build (validated like at startup)."""
    for key in list(os.environ):
        if key.startswith(env_prefix()):
            monkeypatch.delenv(key)
    for key, value in service_env(env).items():
        monkeypatch.setenv(key, str(value))
    return settings_class()()


# Metrics -----------------------------------------------------------------------------------------
SAMPLE_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "gauge": ("",)}


@cache
def exposed_metric_names() -> frozenset[str]:
    """Sample names (name_bucket/_sum/_count, name_total, gauge names) of the API and worker registries.

    Read from the families the registries collect, so labelled metrics that have not been
    observed yet count too.
    """
    from service.core.metrics import ApiMetrics, WorkerMetrics

    names = set()
    for metrics in (ApiMetrics(), WorkerMetrics()):
        for family in metrics.registry.collect():
            names.update(family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type])
    return frozenset(names)


def dashboard_path() -> Path:
    return REPO / "docker" / "grafana" / "dashboards" / "portraitsr.json"


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(dashboard_path().read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


# Kubernetes --------------------------------------------------------------------------------------
def kubectl() -> str | None:
    tool = find_tool("kubectl")
    if tool and subprocess.run([tool, "kustomize", "--help"], capture_output=True).returncode == 0:
        return tool
    return None


@cache
def render_overlay(overlay: str) -> tuple[dict, ...]:
    """`kubectl kustomize k8s/overlays/<overlay>` as a tuple of objects (raises if it fails)."""
    tool = kubectl()
    if tool is None:
        raise RuntimeError("kubectl with kustomize is not installed (scripts/install-test-tools.sh installs it)")
    result = subprocess.run([tool, "kustomize", str(REPO / "k8s" / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"kustomize {overlay} failed:\n{result.stderr}")
    return tuple(load_yaml_documents(result.stdout))


def find_object(objects, kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def container_env(objects, container: dict) -> dict[str, str]:
    """A container's environment as the kubelet builds it: envFrom ConfigMaps, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = find_object(objects, "ConfigMap", source["configMapRef"]["name"])
        env.update(config_map.get("data", {}))
    for variable in container.get("env", []):
        env[variable["name"]] = variable["value"]
    return env


# Dockerfiles -------------------------------------------------------------------------------------
DOCKERFILES = {"cpu": REPO / "docker" / "Dockerfile", "gpu": REPO / "docker" / "Dockerfile.gpu"}


def parse_dockerfile(path: Path) -> list[dict]:
    """The instructions of a Dockerfile (continuations joined), parsed by dockerfile-parse."""
    import io

    from dockerfile_parse import DockerfileParser

    return DockerfileParser(fileobj=io.BytesIO(path.read_bytes()), env_replace=False).structure


def dockerfile_stages(path: Path) -> dict[str, list[dict]]:
    """Instructions of each named stage (``FROM ... AS name``)."""
    stages: dict[str, list[dict]] = {}
    current: list[dict] | None = None
    for instruction in parse_dockerfile(path):
        if instruction["instruction"] == "FROM":
            parts = instruction["value"].split()
            name = parts[2] if len(parts) == 3 and parts[1].lower() == "as" else f"stage{len(stages)}"
            current = stages.setdefault(name, [])
        if current is not None:
            current.append(instruction)
    return stages


def dockerfile_args(path: Path) -> dict[str, str]:
    """Default values of every ARG in the file (global and per stage)."""
    values = {}
    for instruction in parse_dockerfile(path):
        if instruction["instruction"] == "ARG" and "=" in instruction["value"]:
            key, value = instruction["value"].split("=", 1)
            values[key.strip()] = value.strip().strip('"')
    return values


def stage_chain(stages: dict[str, list[dict]], target: str) -> list[list[dict]]:
    """The instructions of ``target`` and of the named stages it is built FROM, base first."""
    chain = []
    name = target
    while name in stages:
        chain.insert(0, stages[name])
        name = stages[name][0]["value"].split()[0]
    return chain


def final_instructions(stages, target: str, instruction: str) -> list[str]:
    return [i["value"] for block in stage_chain(stages, target) for i in block if i["instruction"] == instruction]


def stage_env(stages, target: str) -> dict[str, str]:
    """ENV of a target (its base stages included), parsed with the Dockerfile's own quoting."""
    from dockerfile_parse.util import extract_key_values

    env: dict[str, str] = {}
    for value in final_instructions(stages, target, "ENV"):
        env.update(dict(extract_key_values(env_replace=False, args={}, envs={}, instruction_value=value)))
    return env
