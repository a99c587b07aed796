"""The Dockerfile installs what CI installs (no Docker engine runs here, so its instructions are checked instead):
pyproject.toml via pip, the Makefile's Debian packages, a non-root user, a health check on the real route."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

from manifests import load_compose, one, pod_spec, render_overlay

from gateway.api.routes.health import router as health_router
from vllm_launch import deployment

DOCKERFILE = (deployment.ROOT / "Dockerfile").read_text()


def _stages() -> dict[str, list[tuple[str, str]]]:
    """Each build stage's instructions, as (INSTRUCTION, arguments) with continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "FROM":
            base, _, name = rest.partition(" AS ")
            current = [("FROM", re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], base))]
            stages[name.strip()] = current
        elif stages:
            current.append((instruction, rest.strip()))
    return stages


def _all(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    return [rest for name, rest in stage if name == instruction]


def test_the_gateway_is_the_default_target_on_python_slim() -> None:
    stages = _stages()
    assert list(stages)[-1] == "gateway", "`docker build .` must build the gateway"
    assert stages["gateway"][0] == ("FROM", "python:3.11-slim")
    project = tomllib.loads((deployment.ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"


def test_gateway_installs_like_ci_without_torch() -> None:
    gateway = _stages()["gateway"]
    runs = " ".join(_all(gateway, "RUN"))
    (copy,) = _all(gateway, "COPY")
    source, destination = copy.split()
    assert source == "."
    assert f"pip install {destination} " in runs, "the image installs the project as CI does, from pyproject.toml"
    makefile = (deployment.ROOT / "Makefile").read_text()
    apt = re.search(r"^APT_PACKAGES := (.+)$", makefile, re.M)
    assert apt is not None
    for package in apt[1].split():
        assert re.search(rf"apt-get install [^&]*\b{package}\b", runs), f"Debian package {package} missing"
    project = tomllib.loads((deployment.ROOT / "pyproject.toml").read_text())["project"]
    assert not [dep for dep in project["dependencies"] if re.match(r"(torch|vllm)\b", dep)]
    assert project["scripts"]["vchat"] == "vchat.cli:main"


def _dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (Docker's rules: last match wins)."""
    patterns = [line.strip() for line in (deployment.ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    parts = path.split("/")
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").rstrip("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatchcase(prefix, glob) or fnmatch.fnmatchcase(prefix, glob.removeprefix("**/"))
               for prefix in prefixes):
            ignored = not negated
    return ignored


def test_the_build_context_holds_everything_pyproject_packages() -> None:
    pyproject = tomllib.loads((deployment.ROOT / "pyproject.toml").read_text())
    needed = ["pyproject.toml", pyproject["project"]["readme"]]
    needed += [pattern.rstrip("*") + "/__init__.py" for pattern in
               pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    for sources in pyproject["tool"]["setuptools"].get("data-files", {}).values():
        needed += sources
    for path in needed:
        assert not _dockerignored(path), f"{path} is packaged but .dockerignore leaves it out of the image"
    for secret in (".env", ".git/config", ".venv/bin/python", "var/media/x", "gateway/__pycache__/app.pyc"):
        assert _dockerignored(secret), secret
    assert not _dockerignored(".env.example")


def test_gateway_runs_as_the_non_root_user_kubernetes_expects() -> None:
    gateway = _stages()["gateway"]
    (user,) = _all(gateway, "USER")
    uid = int(user.split(":")[0])
    assert uid != 0
    deployment = one(render_overlay("single-gpu"), "Deployment", "vchat-gateway")
    assert pod_spec(deployment)["securityContext"]["runAsUser"] == uid
    assert json.loads(_all(gateway, "CMD")[-1]) == ["vchat", "serve"]


def test_healthcheck_media_volume_and_port() -> None:
    gateway = _stages()["gateway"]
    (health,) = _all(gateway, "HEALTHCHECK")
    assert "/health" in health and "/health" in {route.path for route in health_router.routes}  # type: ignore[attr-defined]
    assert f"'{deployment.GATEWAY_PORT}'" in health
    env = " ".join(_all(gateway, "ENV"))
    assert f"VCHAT_MEDIA_DIR={deployment.MEDIA_DIR}" in env and f"VCHAT_PORT={deployment.GATEWAY_PORT}" in env
    assert "VCHAT_HOST=0.0.0.0" in env
    assert json.loads(_all(gateway, "VOLUME")[0]) == [deployment.MEDIA_DIR]
    assert _all(gateway, "EXPOSE") == [str(deployment.GATEWAY_PORT)]


def test_vllm_cpu_image_uses_the_ci_installer_and_the_rendered_paths() -> None:
    stage = _stages()["vllm-cpu"]
    runs = " ".join(_all(stage, "RUN"))
    python = deployment.CPU_PYTHON
    venv = python.removesuffix("/bin/python")
    assert f"bash vllm_launch/install_cpu.sh {venv}" in runs
    assert f"{python} -m testmodel.tiny_model {deployment.CPU_MODEL}" in runs
    # What the stage runs with `python -m` is copied in first: the installer's package and the test-model factory.
    copied = {copy.split()[0] for copy in _all(stage, "COPY")}
    assert {"vllm_launch/", "testmodel/"} <= copied, copied
    assert int(_all(stage, "USER")[0].split(":")[0]) != 0
    assert load_compose()["services"]["vllm-cpu"]["image"] == deployment.CPU_IMAGE
