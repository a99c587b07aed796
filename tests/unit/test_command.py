"""vLLM's command line comes from LaunchSettings alone, with the flags the installed vLLM understands."""

from __future__ import annotations

import json
from pathlib import Path

from vllm_launch.command import build_command, lora_modules
from vllm_launch.settings import LaunchSettings


def settings(tmp_path: Path, **overrides: object) -> LaunchSettings:
    values: dict[str, object] = {"adapters_dir": tmp_path / "adapters", "media_dir": tmp_path / "media"}
    values.update(overrides)
    return LaunchSettings(**values)  # type: ignore[arg-type]


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_cpu_command_has_every_required_flag(tmp_path: Path) -> None:
    cmd = build_command(settings(tmp_path), model="/m", device="cpu", vllm_version="0.32.0")
    assert flag(cmd.args, "--model") == "/m"
    assert flag(cmd.args, "--served-model-name") == "videochat-r1.5"
    assert flag(cmd.args, "--dtype") == "bfloat16"
    assert flag(cmd.args, "--max-model-len") == "8192"
    # The encoder cache follows the batched-token budget: a round may bring as many visual tokens as fit the context.
    assert flag(cmd.args, "--max-num-batched-tokens") == "8192"
    assert flag(build_command(settings(tmp_path, max_model_len=16384), model="/m", device="cpu", vllm_version="0.32.0")
                .args, "--max-num-batched-tokens") == "16384"
    assert "--enable-lora" in cmd.args
    assert json.loads(flag(cmd.args, "--limit-mm-per-prompt")) == {"image": 0, "video": 1}
    assert flag(cmd.args, "--allowed-local-media-path") == str((tmp_path / "media").resolve())
    assert "--trust-request-mm-kwargs" in cmd.args
    assert "--gpu-memory-utilization" not in cmd.args
    assert cmd.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert cmd.env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert cmd.argv("/py")[:3] == ["/py", "-m", "vllm.entrypoints.openai.api_server"]


def test_gpu_command_and_older_vllm(tmp_path: Path) -> None:
    cmd = build_command(settings(tmp_path, max_lora_rank=64), model="OpenGVLab/VideoChat-R1_5-7B", device="gpu",
                        vllm_version="0.26.0")
    assert flag(cmd.args, "--dtype") == "auto"
    assert flag(cmd.args, "--gpu-memory-utilization") == "0.9"
    assert flag(cmd.args, "--max-model-len") == "40960"
    assert flag(cmd.args, "--max-lora-rank") == "64"
    # vLLM before 0.31 has no such flag and would refuse to start with it.
    assert "--trust-request-mm-kwargs" not in cmd.args
    # The encoder cache holds a round as large as the context (vLLM's GPU default held 8,960 visual tokens: 144 frames).
    assert flag(cmd.args, "--max-num-batched-tokens") == "40960"
    assert "VLLM_CPU_KVCACHE_SPACE" not in cmd.env
    # Follow-up questions about a video reuse its frames' KV and processed inputs.
    assert "--enable-prefix-caching" in cmd.args and flag(cmd.args, "--mm-processor-cache-gb") == "4"


def test_gpu_context_holds_the_official_frame_count(tmp_path: Path) -> None:
    """An hour-long 16:9 video planned with the gateway's defaults gets VideoChat-R1.5's own 512 frames, and that
    round, its prompt and a full reply fit the GPU context: no frames are cut for lack of context on a GPU."""
    from gateway.media.plan import FrameLimits, VideoInfo, plan_frames
    from vchat_settings import Settings

    gateway = Settings(_env_file=None)  # type: ignore[call-arg]
    context = int(flag(build_command(settings(tmp_path), model="/m", device="gpu", vllm_version="0.26.0").args,
                       "--max-model-len"))
    for width, height in ((1280, 720), (1920, 1080), (720, 1280)):
        plan = plan_frames(VideoInfo(duration_s=3600.0, fps=30.0, width=width, height=height),
                           FrameLimits(max_visual_tokens=gateway.max_visual_tokens, min_pixels=gateway.frame_min_pixels,
                                       max_pixels=gateway.frame_max_pixels, total_pixels=gateway.frame_total_pixels,
                                       max_frames=gateway.max_frames, target_fps=gateway.sample_fps))
        assert plan.nframes == 512
        prompt_allowance = 1024  # the round prompt with a question and options is ~300 tokens
        assert plan.tokens + gateway.round_max_tokens + prompt_allowance <= context, (width, height, plan)
    explicit = build_command(settings(tmp_path, max_model_len=16384), model="/m", device="gpu", vllm_version="0.26.0")
    assert flag(explicit.args, "--max-model-len") == "16384"


def test_adapters_folder_becomes_lora_modules(tmp_path: Path) -> None:
    adapters = tmp_path / "adapters"
    for name in ("beta", "alpha"):
        (adapters / name).mkdir(parents=True)
        (adapters / name / "adapter_config.json").write_text("{}")
    (adapters / "not-an-adapter").mkdir()
    modules = [json.loads(m) for m in lora_modules(adapters, "videochat-r1.5")]
    assert [m["name"] for m in modules] == ["alpha", "beta"]
    assert all(m["base_model_name"] == "videochat-r1.5" and Path(m["path"]).is_absolute() for m in modules)
    cmd = build_command(settings(tmp_path), model="/m", device="cpu", vllm_version=None)
    start = cmd.args.index("--lora-modules")
    assert [json.loads(v)["name"] for v in cmd.args[start + 1:start + 3]] == ["alpha", "beta"]


def test_api_key_and_extra_args_pass_through(tmp_path: Path) -> None:
    cmd = build_command(settings(tmp_path, vllm_api_key="k-1", vllm_extra_args=["--max-num-seqs", "8"]),
                        model="/m", device="cpu", vllm_version="0.32.0")
    assert flag(cmd.args, "--api-key") == "k-1"
    assert cmd.args[-2:] == ["--max-num-seqs", "8"]
