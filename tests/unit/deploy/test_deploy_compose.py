"""docker-compose.yml is a valid compose file (the compose specification's schema, offline) whose vLLM services run
exactly build_command's flags, and whose services, profiles, health checks and volumes fit together."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
from manifests import compose_schema, duration_s, flag, load_compose

from gateway.api.routes.health import router as health_router
from vllm_launch import deployment
from vllm_launch.command import build_command

VLLM_SERVICES = {"vllm": deployment.GPU, "vllm-cpu": deployment.CPU}
GATEWAYS = {"gateway": "vllm", "gateway-cpu": "vllm-cpu", "gateway-gemini": None}
PROFILES = {None: {"vllm", "gateway"}, "cpu": {"vllm-cpu", "gateway-cpu"}, "gemini-only": {"gateway-gemini"}}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)
    broken = copy.deepcopy(compose)
    broken["services"]["vllm"]["helthcheck"] = broken["services"]["vllm"]["healthcheck"]
    assert list(validator.iter_errors(broken)), "the schema must refuse unknown keys"


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == set().union(*PROFILES.values())
    for profile, names in PROFILES.items():
        for name in names:
            assert services[name].get("profiles", [None]) == [profile], name
            for dependency in services[name].get("depends_on", {}):
                # what a service needs is started with it, whatever profile is active
                assert services[dependency].get("profiles", [None]) == [profile], (name, dependency)
    declared = set(compose["volumes"])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in declared, (name, volume)


@pytest.mark.parametrize("name", VLLM_SERVICES)
def test_vllm_runs_exactly_the_flags_vllm_launch_builds(compose: dict[str, Any], name: str) -> None:
    target = VLLM_SERVICES[name]
    service = compose["services"][name]
    expected = build_command(target.settings(), model=target.model, device=target.device,
                             vllm_version=target.vllm_version)
    assert service["entrypoint"] + service["command"] == expected.argv(target.python)
    assert expected.env.items() <= service["environment"].items()
    assert service["environment"]["VLLM_API_KEY"] == "${VCHAT_VLLM_API_KEY:-}"
    assert "--api-key" not in service["command"]
    if name == "vllm":
        assert service["image"] == f"vllm/vllm-openai:v{target.vllm_version}"
        assert "--trust-request-mm-kwargs" not in service["command"], "vLLM before 0.31 refuses that flag"
    else:
        assert service["build"]["target"] == "vllm-cpu"
        assert service["image"].endswith(f":{target.vllm_version}")  # install_cpu.sh's pin
        assert service["command"][service["command"].index("--dtype") + 1] == "bfloat16"


@pytest.mark.parametrize("name", VLLM_SERVICES)
def test_vllm_service_health_volumes_and_hardware(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    args = service["command"]
    port = flag(args, "--port")
    assert flag(args, "--host") == "0.0.0.0"
    assert f"http://127.0.0.1:{port}/health" in " ".join(service["healthcheck"]["test"])
    assert duration_s(service["healthcheck"]["start_period"]) >= 15 * 60, "model loading takes minutes"
    assert "ports" not in service, "vLLM stays private: only the gateway reaches it"
    mounts = {volume.split(":")[1]: volume for volume in service["volumes"]}
    assert mounts[flag(args, "--allowed-local-media-path")] == f"media:{deployment.MEDIA_DIR}:ro"
    assert mounts[service["environment"]["VLLM_LORA_RESOLVER_CACHE_DIR"]].startswith("adapters:")
    assert mounts[service["environment"]["HF_HOME"]].startswith("hf-cache:")
    assert "shm_size" in service or service.get("ipc") == "host"
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    if name == "vllm":
        assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    else:
        assert devices == []


@pytest.mark.parametrize("name", GATEWAYS)
def test_gateway_services(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    env = service["environment"]
    assert service["build"] == {"context": ".", "target": "gateway"}
    assert service["env_file"] == [{"path": ".env", "required": False}]
    assert service["ports"] == [f"{env['VCHAT_PORT']}:{env['VCHAT_PORT']}"]
    assert f"media:{env['VCHAT_MEDIA_DIR']}" in service["volumes"]
    assert f"adapters:{env['VCHAT_ADAPTERS_DIR']}" in service["volumes"]
    assert {"/health", "/ready"} <= {route.path for route in health_router.routes}  # type: ignore[attr-defined]
    backend = GATEWAYS[name]
    if backend is None:
        assert env["VCHAT_VLLM_URL"] == "" and "depends_on" not in service
        return
    assert service["depends_on"] == {backend: {"condition": "service_healthy"}}
    vllm_args = compose["services"][backend]["command"]
    assert env["VCHAT_VLLM_URL"] == f"http://{backend}:{flag(vllm_args, '--port')}"
    assert env["VCHAT_SERVED_MODEL_NAME"] == flag(vllm_args, "--served-model-name")
    assert env["VCHAT_MEDIA_DIR"] == flag(vllm_args, "--allowed-local-media-path")
    assert env["VCHAT_MODEL"] == flag(vllm_args, "--model")
    assert env["VCHAT_MAX_LORA_RANK"] == flag(vllm_args, "--max-lora-rank")
    vllm_env = compose["services"][backend]["environment"]
    assert env["VCHAT_ADAPTERS_DIR"] == vllm_env["VLLM_LORA_RESOLVER_CACHE_DIR"] == deployment.ADAPTERS_DIR
