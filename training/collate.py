"""Turns samples into Qwen2.5-VL model inputs exactly as vLLM builds them for the gateway's request (torch)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.conversation import Turn
from training.frames import VideoFrames
from videochat_r15.inputs import ModelTokens, decode_jpeg, vllm_positions

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    """One sample's token ids, labels (IGNORE outside assistant replies), M-RoPE positions and video tensors."""

    input_ids: list[int]
    labels: list[int]
    positions: np.ndarray[Any, Any]
    pixel_values_videos: Any
    video_grid_thw: Any


class Encoder(ModelTokens):
    """Chat template + HF processor (frames with vLLM's VideoMetadata, size pinned as the gateway pins it)."""

    def _messages(self, turns: Sequence[Turn]) -> list[dict[str, Any]]:
        """Chat-template messages; the video is the first part of the first user turn, as the gateway sends it."""
        out: list[dict[str, Any]] = []
        for turn in turns:
            if turn.role == "user" and not any(m["role"] == "user" for m in out):
                out.append({"role": "user", "content": [{"type": "video"}, {"type": "text", "text": turn.text}]})
            else:
                out.append({"role": turn.role, "content": turn.text})
        return out

    def prompt(self, turns: Sequence[Turn], frames: VideoFrames) -> dict[str, Any]:
        """Inputs for the conversation up to the assistant's next reply (ids, video tensors, grid, time factor)."""
        from transformers.video_utils import VideoMetadata

        text = self.processor.apply_chat_template(self._messages(turns), tokenize=False, add_generation_prompt=True)
        pixels = np.stack([decode_jpeg(path.read_bytes()) for path in frames.jpegs])
        n = len(frames.jpegs)
        # What vLLM's jpeg_sequence loader hands the processor for media_io_kwargs {num_frames: -1, fps: F} ...
        metadata = VideoMetadata(total_num_frames=n, fps=frames.fps, duration=n / frames.fps,
                                 video_backend="jpeg_sequence", frames_indices=list(range(n)))
        # ... and the gateway's mm_processor_kwargs, which pin the resize window to the frames' own area.
        area = frames.width * frames.height
        out = self.processor(text=[text], videos=[pixels], video_metadata=[metadata], return_tensors="pt",
                             size={"shortest_edge": area, "longest_edge": area})
        t_factors = [float(s) * self.tokens_per_second for s in out["second_per_grid_ts"].tolist()]
        return {"input_ids": out["input_ids"][0].tolist(), "pixel_values_videos": out["pixel_values_videos"],
                "video_grid_thw": out["video_grid_thw"], "grid": out["video_grid_thw"].tolist(),
                "t_factors": t_factors}

    def text_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, turns: Sequence[Turn], frames: VideoFrames) -> Encoded:
        """The whole conversation; labels only on assistant replies and their <|im_end|>.

        The prompt up to the first reply goes through the processor (it expands the video); every later piece
        is tokenized on its own at chat-template boundaries, which is also where vLLM's prompt ends.
        """
        first = next(i for i, t in enumerate(turns) if t.role == "assistant")
        prompt = self.prompt(turns[:first], frames)
        ids, labels = list(prompt["input_ids"]), [IGNORE] * len(prompt["input_ids"])
        for index in range(first, len(turns)):
            turn = turns[index]
            if turn.role == "assistant":
                reply = [*self.text_ids(turn.text), self.im_end]
                ids += reply
                labels += reply
                continue
            # "\n" ends the previous turn; then this user turn and the opening of the next reply.
            piece = self.text_ids(f"\n<|im_start|>user\n{turn.text}<|im_end|>\n<|im_start|>assistant\n")
            ids += piece
            labels += [IGNORE] * len(piece)
        positions = vllm_positions(ids, self.video_token_id, prompt["grid"], prompt["t_factors"])
        return Encoded(ids, labels, positions, prompt["pixel_values_videos"], prompt["video_grid_thw"])


def batch(rows: Sequence[Encoded], pad: int) -> dict[str, Any]:
    """A right-padded batch: input_ids, labels, attention_mask, position_ids (3, B, L) and the videos."""
    import torch

    length = max(len(r.input_ids) for r in rows)
    input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    positions = torch.zeros((3, len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        input_ids[i, :n] = torch.tensor(row.input_ids)
        labels[i, :n] = torch.tensor(row.labels)
        mask[i, :n] = 1
        positions[:, i, :n] = torch.from_numpy(np.ascontiguousarray(row.positions))
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask, "position_ids": positions,
            "pixel_values_videos": torch.cat([r.pixel_values_videos for r in rows]),
            "video_grid_thw": torch.cat([r.video_grid_thw for r in rows])}
