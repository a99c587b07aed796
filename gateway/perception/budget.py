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


@dataclass(frozen=True)
class RoundPlan:
    """The frames of one round, its reply budget, and notes for the client when either was cut."""

    frames: FramePlan
    max_tokens: int
    notes: tuple[str, ...] = ()


def plan_round(video: VideoInfo, limits: FrameLimits, *, context: int | None, prompt: str, max_tokens: int,
               max_tokens_set: bool, spare_frames: int) -> RoundPlan:
    """Frames for a round (``limits.max_visual_tokens`` is the visual-token limit: setting or encoder cache).

    With a known context (vLLM's max_model_len), the frames' tokens (spare glue frames included), the text's and
    ``max_tokens`` must fit in it. Frames are cut first, so the reply keeps its budget (the official 2048). When
    even the fewest frames do not fit: a default reply budget is lowered, down to MIN_REPLY_TOKENS; a budget the
    client set is kept and the request refused (400 ``context_length_exceeded``, saying the largest that fits).
    Raises InvalidRequest when the video cannot be sampled at all.
    """
    text = text_tokens(prompt)
    encoder = limits.max_visual_tokens
    room = encoder if context is None else min(encoder, context - text - max_tokens)
    try:
        frames = _plan(video, limits, room, spare_frames)
        return RoundPlan(frames, max_tokens, _cut_notes(video, limits, frames, context, text, max_tokens,
                                                        max_tokens_set, by_context=room < encoder))
    except ValueError as exc:
        if context is None or room >= encoder:
            raise InvalidRequest(f"The video cannot be sampled within the limits: {exc}.") from exc
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
