"""The generated parts of the deployment files are what ``python -m vllm_launch.render`` writes now: a vLLM flag or a
setting changed in one place only (the code, or a file by hand) fails here."""

from __future__ import annotations

import os
import re

import pytest

from vchat_settings import Settings
from vllm_launch import deployment, render
from vllm_launch.settings import LaunchSettings

GENERATED = [name for files in render.FILES.values() for name in files]


@pytest.mark.parametrize("name", GENERATED)
def test_generated_files_are_up_to_date(name: str) -> None:
    assert (deployment.ROOT / name).read_text() == render.rendered(name), (
        f"{name} is out of date: run `.venv/bin/python -m vllm_launch.render`")


def test_render_check_command_passes() -> None:
    assert render.main(["--check"]) == 0


@pytest.mark.parametrize(("name", "old", "new"), [
    ("docker-compose.yml", '- "--max-loras"\n      - "4"', '- "--max-loras"\n      - "8"'),
    ("k8s/base/vllm.yaml", '- "--max-model-len"\n            - "40960"', '- "--max-model-len"\n            - "16384"'),
    ("k8s/base/config.yaml", 'VCHAT_MAX_FRAMES: "512"', 'VCHAT_MAX_FRAMES: "32"'),
])
def test_a_hand_edit_of_a_generated_block_is_caught(name: str, old: str, new: str) -> None:
    text = (deployment.ROOT / name).read_text()
    assert old in text
    edited = text.replace(old, new, 1)
    assert render.fill_blocks(edited, name) == text != edited


def test_a_flag_changed_in_vllm_launch_only_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    before = {name: render.rendered(name) for name in GENERATED if name != ".env.example"}
    monkeypatch.setitem(deployment.LAUNCH, "max_loras", 8)  # as if LaunchSettings' default had changed
    after = {name: render.rendered(name) for name in before}
    assert after["docker-compose.yml"] != before["docker-compose.yml"]
    assert after["k8s/base/vllm.yaml"] != before["k8s/base/vllm.yaml"]


def test_rendering_ignores_this_machines_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = render.rendered("docker-compose.yml")
    monkeypatch.setenv("VCHAT_MAX_LORAS", "9")
    monkeypatch.setenv("VCHAT_PORT", "9999")
    assert render.rendered("docker-compose.yml") == before


def test_markers_must_balance() -> None:
    with pytest.raises(render.RenderError):
        render.fill_blocks("a:\n  # >>> vllm_launch.render: k8s/vllm\n  b: 1\n")
    with pytest.raises(render.RenderError):
        render.fill_blocks("# >>> vllm_launch.render: no/such-block\n# <<< vllm_launch.render\n")


def _every_variable() -> set[str]:
    names = set(deployment.PLACEHOLDER_SECRETS)
    for cls in (Settings, LaunchSettings):
        prefix = str(cls.model_config.get("env_prefix", ""))
        names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    return names


def test_env_example_lists_every_setting() -> None:
    text = (deployment.ROOT / ".env.example").read_text()
    listed = re.findall(r"^#? ?(VCHAT_[A-Z0-9_]+)=", text, re.M)
    assert len(listed) == len(set(listed)), "a variable is listed twice"
    assert set(listed) == _every_variable()
    assert "VCHAT_GEMINI_API_KEY" in listed


def test_env_example_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (deployment.ROOT / ".env.example").read_text()
    for var in [var for var in os.environ if var.startswith("VCHAT_")]:
        monkeypatch.delenv(var)
    for var, value in re.findall(r"^# (VCHAT_[A-Z0-9_]+)=(.+)$", text, re.M):
        monkeypatch.setenv(var, value)
    assert Settings().port == 8000
    assert LaunchSettings().vllm_port == 8001


def test_readme_deploy_section_has_the_commands() -> None:
    readme = (deployment.ROOT / "README.md").read_text()
    deploy = readme[readme.index("## Deploy\n"):readme.index("## Development\n")]
    for command in ("docker compose up -d", "--profile cpu", "--profile gemini-only",
                    "kubectl apply -k k8s/overlays/single-gpu", "create secret generic vchat-secrets",
                    "k8s/README.md", "make deploy-check"):
        assert command in deploy, command
