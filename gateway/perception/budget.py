"""Plans one round within vLLM's limits: frames under the visual-token limit and inside the context that the prompt
and the reply leave, and says what was cut and why."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from gateway.errors import InvalidRequest
from gateway.media.plan import FrameLimits, FramePlan, VideoInfo, plan_frames
from gateway.media.sampling import FPS_MIN_FRAMES, smart_nframes
from videochat_r15.geometry import video_frame_size, visual_tokens
from videochat_r15.template import text_tokens

# A reply the gateway may shorten to fit the context is never planned shorter than this.
MIN_REPLY_TOKENS = 256
# Frames are planned for a round's text rounded up to these steps, not for its exact length: two questions about one
# video (VideoChat-R1.5's round prompt is ~540-720 bytes with a short question) then get the same round-1 frames, so
# vLLM's prefix and encoder caches can serve the second. A shorter question planned to its length would leave room
# for a frame more, and one different frame changes every JPEG vLLM sees.
PLANNED_TEXT_MIN = 1024
PLANNED_TEXT_STEP = 512


def planned_text_tokens(text: str) -> int:
    """The text tokens a round's frames are planned around: text_tokens, at least PLANNED_TEXT_MIN, rounded up to a
    multiple of PLANNED_TEXT_STEP (so a question's length within a step does not change the frames)."""
    return max(PLANNED_TEXT_MIN, -(-text_tokens(text) // PLANNED_TEXT_STEP) * PLANNED_TEXT_STEP)


@dataclass(frozen=True)
class RoundPlan:
    """The frames of one round, its reply budget, and notes for the client when either was cut."""

    frames: FramePlan
    max_tokens: int
    notes: tuple[str, ...] = ()


def text_room(video: VideoInfo, limits: FrameLimits, *, context: int | None, prompt: str, max_tokens: int,
              spare_frames: int) -> int | None:
    """Tokens of text a round can add to ``prompt`` and still send its fewest frames and reply; None when vLLM's
    context is not known."""
    if context is None:
        return None
    try:
        fewest = _fewest(video, limits, spare_frames)
    except ValueError:
        return 0
    return max(0, context - text_tokens(prompt) - max_tokens - fewest)


def plan_round(video: VideoInfo, limits: FrameLimits, *, context: int | None, prompt: str, max_tokens: int,
               max_tokens_set: bool, spare_frames: int, reserved: int = 0) -> RoundPlan:
    """Frames for a round (``limits.max_visual_tokens`` is the visual-token limit: setting or encoder cache).

    With a known context (vLLM's max_model_len), the frames' tokens (spare glue frames included), the text's and
    ``max_tokens`` must fit in it. Frames are cut first, so the reply keeps its budget (the official 2048). When
    even the fewest frames do not fit: a default reply budget is lowered, down to MIN_REPLY_TOKENS; a budget the
    client set is kept and the request refused (400 ``context_length_exceeded``, saying the largest that fits).
    The prompt counts as planned_text_tokens (its exact bound where the context cannot spare that), so questions of
    similar length get the same frames. ``reserved`` tokens are held for text added once the frames are known (their
    subtitles).
    Raises InvalidRequest when the video cannot be sampled at all.
    """
    text = text_tokens(prompt) + reserved
    encoder = limits.max_visual_tokens
    # The planned text first; the exact text where a small context cannot spare the margin.
    for counted in dict.fromkeys((planned_text_tokens(prompt) + reserved, text)):
        room = encoder if context is None else min(encoder, context - counted - max_tokens)
        try:
            frames = _plan(video, limits, room, spare_frames)
            return RoundPlan(frames, max_tokens, _cut_notes(video, limits, frames, context, counted, max_tokens,
                                                            max_tokens_set, by_context=room < encoder))
        except ValueError as exc:
            if context is None or room >= encoder:
                raise InvalidRequest(f"The video cannot be sampled within the limits: {exc}.") from exc
    assert context is not None  # without one, the loop returned or raised
    fewest = _fewest(video, limits, spare_frames)
    largest = context - text - fewest
    if max_tokens_set or largest < MIN_REPLY_TOKENS:
        raise InvalidRequest(
            f"vLLM's context of {context} tokens cannot hold this round: the prompt takes up to {text} tokens, "
            f"the fewest frames ({FPS_MIN_FRAMES}) {fewest} and the reply {max_tokens}"
            + (f"; ask for max_tokens of at most {largest}." if largest >= 1 else "."),
            param="max_tokens", code="context_length_exceeded")
    try:
        frames = _plan(video, limits, min(encoder, context - text - MIN_REPLY_TOKENS), spare_frames)
    except ValueError as exc:
        raise InvalidRequest(f"The video cannot be sampled within the limits: {exc}.") from exc
    reply = context - text - visual_tokens(frames.nframes + spare_frames, frames.height, frames.width)
    note = (f"The reply budget was lowered from {max_tokens} to {reply} tokens so that {frames.nframes} frames "
            f"and the prompt fit vLLM's context of {context} tokens.")
    return RoundPlan(frames, reply, (note,))


def largest_round(video: VideoInfo, limits: FrameLimits, *, context: int | None, prompt: str, max_tokens: int,
                  spare_frames: int, reserved: int = 0) -> int:
    """The most tokens a round with this prompt can hold in vLLM's KV cache: the frames planned before the context
    cuts any (spare glue frames included), the text as planned, ``reserved`` tokens and the whole reply, at most the
    context. plan_round only ever cuts frames or the reply from these to fit the context, so no round holds more."""
    try:
        frames = _plan(video, limits, limits.max_visual_tokens, spare_frames)
        seen = visual_tokens(frames.nframes + spare_frames, frames.height, frames.width)
    except ValueError:
        seen = limits.max_visual_tokens
    held = seen + planned_text_tokens(prompt) + reserved + max_tokens
    return held if context is None else min(context, held)


def _plan(video: VideoInfo, limits: FrameLimits, room: int, spare_frames: int) -> FramePlan:
    if room < 1:
        raise ValueError("no room is left for frames")
    return plan_frames(video, dataclasses.replace(limits, max_visual_tokens=room), spare_frames=spare_frames)


def _fewest(video: VideoInfo, limits: FrameLimits, spare_frames: int) -> int:
    """Visual tokens of the fewest, smallest frames a round can send (spare glue frames included)."""
    fewest = _plan(video, dataclasses.replace(limits, max_frames=FPS_MIN_FRAMES), 1 << 30, spare_frames)
    height, width = video_frame_size(video.height, video.width, fewest.nframes, min_pixels=limits.min_pixels,
                                     max_pixels=limits.min_pixels, total_pixels=limits.total_pixels)
    return visual_tokens(fewest.nframes + spare_frames, height, width)


def _cut_notes(video: VideoInfo, limits: FrameLimits, frames: FramePlan, context: int | None, text: int,
               max_tokens: int, max_tokens_set: bool, *, by_context: bool) -> tuple[str, ...]:
    """A note when the round sends fewer (or smaller) frames than the request's sampling asks for."""
    wanted = smart_nframes(video.frame_count, video.fps, fps=limits.target_fps, max_frames=limits.max_frames)
    size = video_frame_size(video.height, video.width, wanted, min_pixels=limits.min_pixels,
                            max_pixels=limits.max_pixels, total_pixels=limits.total_pixels)
    if frames.nframes >= wanted and (frames.height, frames.width) == size:
        return ()
    sent = f"{frames.nframes} frames of {frames.width}x{frames.height}"
    asked = f"{wanted} of {size[1]}x{size[0]} ({limits.target_fps:g} fps, at most {limits.max_frames})"
    if by_context and context is not None:
        why = (f"vLLM's context of {context} tokens holds {context - text - max_tokens} visual tokens next to the "
               f"prompt (up to {text}) and the reply ({max_tokens}"
               + (", the max_tokens asked for: fewer gives more frames)" if max_tokens_set else ")"))
    else:
        why = (f"a round may spend {limits.max_visual_tokens} visual tokens (VCHAT_MAX_VISUAL_TOKENS, or the "
               "encoder cache vLLM reported)")
    return (f"Sent {sent} instead of {asked}: {why}.",)
