"""Bad settings stop start-up with one line naming the setting; good ones parse as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vchat_settings import Settings, SharedSettings
from vllm_launch.settings import LaunchSettings
from vllm_launch.stack import ROOT


def run_module(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VCHAT_") or k == "VCHAT_TEST_SESSION"}
    return subprocess.run([sys.executable, "-m", module, *args], env={**clean, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("env", "named"), [
    ({"VCHAT_PORT": "70000"}, "VCHAT_PORT"),
    ({"VCHAT_PORT": "eighty"}, "VCHAT_PORT"),
    ({"VCHAT_VLLM_URL": "ftp://127.0.0.1:8001"}, "VCHAT_VLLM_URL"),
    ({"VCHAT_VLLM_URL": "not a url"}, "VCHAT_VLLM_URL"),
    ({"VCHAT_LOG_LEVEL": "LOUD"}, "VCHAT_LOG_LEVEL"),
    ({"VCHAT_VLLM_REPLICAS_DNS": "vllm-headless"}, "VCHAT_VLLM_REPLICAS_DNS"),  # no port
    ({"VCHAT_VLLM_REPLICAS_DNS": "ftp://vllm-headless:8001"}, "VCHAT_VLLM_REPLICAS_DNS"),
    ({"VCHAT_VLLM_REPLICAS_DNS": "vllm-headless:8001/v1"}, "VCHAT_VLLM_REPLICAS_DNS"),
    ({"VCHAT_VLLM_REPLICAS_DNS": "vllm-headless:port"}, "VCHAT_VLLM_REPLICAS_DNS"),
    ({"VCHAT_MAX_LORA_RANK": "7"}, "VCHAT_MAX_LORA_RANK"),  # refused here as by the launcher: one definition
    ({"VCHAT_SERVED_MODEL_NAME": ""}, "VCHAT_SERVED_MODEL_NAME"),
])
def test_gateway_refuses_bad_settings_in_one_line(env: dict[str, str], named: str) -> None:
    result = run_module("gateway", env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0] and lines[0].startswith("vchat: invalid setting")


@pytest.mark.parametrize(("env", "named"), [
    ({"VCHAT_MODEL": "/no/such/model/dir"}, "VCHAT_MODEL"),
    ({"VCHAT_MODEL": "./relative/missing"}, "VCHAT_MODEL"),
    ({"VCHAT_VLLM_PORT": "0"}, "VCHAT_VLLM_PORT"),
    ({"VCHAT_MAX_LORA_RANK": "7"}, "VCHAT_MAX_LORA_RANK"),
])
def test_launcher_refuses_bad_settings_in_one_line(env: dict[str, str], named: str) -> None:
    result = run_module("vllm_launch", env, "--print-args")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]


def test_a_setting_both_processes_read_is_defined_once() -> None:
    # The gateway and the launcher read the same environment; a variable they both know comes from SharedSettings,
    # so its type, default and validation cannot drift apart (VCHAT_MAX_LORA_RANK=7 was accepted by one only).
    both = set(Settings.model_fields) & set(LaunchSettings.model_fields)
    assert both == set(SharedSettings.model_fields)
    assert {"model", "served_model_name", "adapters_dir", "media_dir", "vllm_api_key", "max_lora_rank"} <= both
    gateway, launcher = Settings(max_lora_rank=32, model=""), LaunchSettings(max_lora_rank=32, model="")
    assert (gateway.max_lora_rank, gateway.model) == (launcher.max_lora_rank, launcher.model) == (32, None)


def test_model_directory_without_config_is_refused(tmp_path: Path) -> None:
    result = run_module("vllm_launch", {"VCHAT_MODEL": str(tmp_path)}, "--print-args")
    assert result.returncode != 0
    assert "VCHAT_MODEL" in result.stderr and "config.json" in result.stderr


def test_api_key_values_are_not_echoed_in_errors() -> None:
    result = run_module("gateway", {"VCHAT_API_KEYS": "sk-abc", "VCHAT_PORT": "-1"})
    assert "VCHAT_PORT" in result.stderr and "sk-abc" not in result.stderr


def test_settings_parse_keys_and_empty_vllm_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VCHAT_API_KEYS", " sk-a , sk-b ,")
    monkeypatch.setenv("VCHAT_VLLM_URL", "")
    settings = Settings()
    assert [key.get_secret_value() for key in settings.api_keys] == ["sk-a", "sk-b"]
    assert settings.vllm_base is None
    assert "sk-a" not in repr(settings)


@pytest.mark.parametrize(("value", "expected"), [
    ("vllm-headless.vchat.svc.cluster.local:8001", "http://vllm-headless.vchat.svc.cluster.local:8001"),
    (" https://vllm-headless:8443/ ", "https://vllm-headless:8443"),
    ("", None),
])
def test_replicas_dns_is_a_host_and_port(value: str, expected: str | None) -> None:
    settings = Settings(vllm_url="http://vllm-router:8001", vllm_replicas_dns=value)
    assert settings.vllm_replicas_dns == expected
    # Found through DNS, the replicas no longer default to the vLLM URL (a router in front of them).
    assert settings.replicas == ([] if expected else ["http://vllm-router:8001"])
