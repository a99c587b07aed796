"""gateway.perception.budget: the official frame count where vLLM's limits allow, never a request over its context."""

from __future__ import annotations

import random

import pytest

from gateway.errors import InvalidRequest
from gateway.media.plan import FrameLimits, VideoInfo
from gateway.media.sampling import KEY_TIME_SPARE_FRAMES, select_frames
from gateway.perception.budget import MIN_REPLY_TOKENS, largest_round, plan_round
from vchat_settings import Settings
from videochat_r15.geometry import MODEL_CARD_TOTAL_PIXELS, visual_tokens
from videochat_r15.prompts import round_prompt
from videochat_r15.template import text_tokens

HOUR = VideoInfo(duration_s=3600.0, fps=30.0, width=1920, height=1080, total_frames=108_000)
PROMPT = round_prompt("What moves?", ["A. nothing", "B. the bars"], glue=True)
DEFAULTS = Settings(vllm_url=None)


def limits(**overrides: object) -> FrameLimits:
    values: dict[str, object] = {
        "max_visual_tokens": DEFAULTS.max_visual_tokens, "min_pixels": DEFAULTS.frame_min_pixels,
        "max_pixels": DEFAULTS.frame_max_pixels, "total_pixels": DEFAULTS.frame_total_pixels,
        "max_frames": DEFAULTS.max_frames, "target_fps": DEFAULTS.sample_fps, **overrides}
    return FrameLimits(**values)  # type: ignore[arg-type]


def cost(plan_nframes: int, height: int, width: int) -> int:
    return visual_tokens(plan_nframes + KEY_TIME_SPARE_FRAMES, height, width)


def test_defaults_send_the_official_512_frames_when_the_context_holds_them() -> None:
    plan = plan_round(HOUR, limits(), context=40960, prompt=PROMPT, max_tokens=2048, max_tokens_set=False,
                      spare_frames=KEY_TIME_SPARE_FRAMES)
    assert plan.frames.nframes == 512 and plan.max_tokens == 2048 and plan.notes == ()
    # A 30 s zoom into the hour gets six frames, as upstream; with the old 64-frame cap it got one.
    span = [(1800.0, 1830.0)]
    inside = sum(1800 * 30 <= i <= 1830 * 30 for i in select_frames(108_000, 30.0, 512, span).indices)
    assert inside >= 6
    assert sum(1800 * 30 <= i <= 1830 * 30 for i in select_frames(108_000, 30.0, 64, span).indices) <= 1


def test_a_small_context_cuts_frames_keeps_the_reply_and_says_why() -> None:
    plan = plan_round(HOUR, limits(), context=8192, prompt=PROMPT, max_tokens=2048, max_tokens_set=False,
                      spare_frames=KEY_TIME_SPARE_FRAMES)
    frames = plan.frames
    assert 60 < frames.nframes < 512 and plan.max_tokens == 2048
    assert cost(frames.nframes, frames.height, frames.width) + text_tokens(PROMPT) + 2048 <= 8192
    (note,) = plan.notes
    assert f"Sent {frames.nframes} frames" in note and "instead of 512" in note and "context of 8192" in note


def test_never_over_the_context_whatever_the_limits() -> None:
    rng = random.Random(13)
    for _ in range(300):
        context = rng.randint(1024, 65536)
        max_tokens = rng.randint(16, 4096)
        chosen = rng.random() < 0.5
        video = VideoInfo(duration_s=rng.uniform(2, 7200), fps=rng.choice([24.0, 30.0, 60.0]),
                          width=rng.choice([320, 1280, 1920, 720]), height=rng.choice([240, 720, 1080, 1280]))
        try:
            plan = plan_round(video, limits(max_visual_tokens=rng.choice([2048, 7680, 36864])), context=context,
                              prompt=PROMPT, max_tokens=max_tokens, max_tokens_set=chosen,
                              spare_frames=KEY_TIME_SPARE_FRAMES)
        except InvalidRequest:
            continue
        frames = plan.frames
        assert cost(frames.nframes, frames.height, frames.width) + text_tokens(PROMPT) + plan.max_tokens <= context
        assert plan.max_tokens == max_tokens or (not chosen and plan.max_tokens >= MIN_REPLY_TOKENS)


def test_no_round_holds_more_than_admission_reserves_for_it() -> None:
    # Admission reserves largest_round for a job: whatever the context cuts, and whichever of its questions a round asks
    # (the glue rounds' or the last one's, with subtitles' tokens reserved), no round of it is planned larger.
    rng = random.Random(7)
    for _ in range(300):
        context, max_tokens, reserved = rng.randint(1024, 65536), rng.randint(16, 4096), rng.choice([0, 900])
        video = VideoInfo(duration_s=rng.uniform(2, 7200), fps=rng.choice([24.0, 30.0, 60.0]),
                          width=rng.choice([320, 1280, 1920, 720]), height=rng.choice([240, 720, 1080, 1280]))
        bounds = limits(max_visual_tokens=rng.choice([2048, 7680, 36864]))
        prompts = [round_prompt("What moves?", ["A. nothing", "B. the bars"], glue=glue) for glue in (True, False)]
        reserve = max(largest_round(video, bounds, context=context, prompt=prompt, max_tokens=max_tokens,
                                    spare_frames=KEY_TIME_SPARE_FRAMES, reserved=reserved) for prompt in prompts)
        assert reserve <= context
        for prompt in prompts:
            try:
                plan = plan_round(video, bounds, context=context, prompt=prompt, max_tokens=max_tokens,
                                  max_tokens_set=False, spare_frames=KEY_TIME_SPARE_FRAMES, reserved=reserved)
            except InvalidRequest:
                continue
            frames = plan.frames
            assert cost(frames.nframes, frames.height, frames.width) + text_tokens(prompt) + reserved \
                + plan.max_tokens <= reserve


def test_a_round_of_a_short_clip_reserves_its_frames_text_and_reply_not_the_context() -> None:
    # The H100 figures: a 60 s 1080p clip, 120 frames of 7,200 visual tokens, 256 reply tokens, context 40,960.
    minute = VideoInfo(duration_s=60.0, fps=30.0, width=1920, height=1080, total_frames=1800)
    reserve = largest_round(minute, limits(), context=40960, prompt=PROMPT, max_tokens=256,
                            spare_frames=KEY_TIME_SPARE_FRAMES)
    assert 7200 + 256 < reserve < 9000


def test_a_default_reply_budget_is_lowered_when_even_four_frames_do_not_fit() -> None:
    plan = plan_round(HOUR, limits(), context=3000, prompt=PROMPT, max_tokens=2048, max_tokens_set=False,
                      spare_frames=KEY_TIME_SPARE_FRAMES)
    assert MIN_REPLY_TOKENS <= plan.max_tokens < 2048
    assert "lowered from 2048" in plan.notes[0]


def test_a_reply_budget_the_client_chose_is_kept_and_the_request_refused() -> None:
    with pytest.raises(InvalidRequest) as refused:
        plan_round(HOUR, limits(), context=8192, prompt=PROMPT, max_tokens=7800, max_tokens_set=True,
                   spare_frames=KEY_TIME_SPARE_FRAMES)
    assert refused.value.code == "context_length_exceeded" and refused.value.param == "max_tokens"
    largest = int(refused.value.message.rsplit("at most ", 1)[1].rstrip("."))
    plan = plan_round(HOUR, limits(), context=8192, prompt=PROMPT, max_tokens=largest, max_tokens_set=True,
                      spare_frames=KEY_TIME_SPARE_FRAMES)
    assert plan.max_tokens == largest and plan.frames.nframes == 4


def test_512_frames_fit_the_default_visual_token_limit_at_any_aspect_ratio() -> None:
    for width, height in [(1920, 1080), (1080, 1920), (640, 480), (480, 640), (1000, 1000), (2560, 1080)]:
        video = VideoInfo(duration_s=3600.0, fps=30.0, width=width, height=height)
        plan = plan_round(video, limits(total_pixels=MODEL_CARD_TOTAL_PIXELS), context=None, prompt=PROMPT,
                          max_tokens=2048, max_tokens_set=False, spare_frames=KEY_TIME_SPARE_FRAMES)
        assert plan.frames.nframes == 512 and plan.notes == (), (width, height)


def test_questions_of_different_lengths_get_the_same_frames_when_the_context_cuts_them() -> None:
    # The context, not the encoder, bounds these frames: planned to each prompt's exact length, the longer question
    # would get fewer frames, so vLLM's caches could not serve a follow-up question about the same video.
    short = round_prompt("What moves?", None, glue=True)
    longer = round_prompt("Which of the coloured bars moves first, and how far across the pattern does it go?",
                          ["A. the red one", "B. the blue one", "C. neither"], glue=True)
    assert text_tokens(longer) - text_tokens(short) > 100
    plans = [plan_round(HOUR, limits(), context=8192, prompt=p, max_tokens=2048, max_tokens_set=False,
                        spare_frames=KEY_TIME_SPARE_FRAMES) for p in (short, longer)]
    assert plans[0].notes and plans[0].frames == plans[1].frames
