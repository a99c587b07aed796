"""Qwen2.5-VL model inputs exactly as vLLM 0.32 builds them for a gateway round: decoded frames, the HF processor
call, the model's special token ids and M-RoPE positions (numpy; transformers and torch where called).

Positions are computed as vLLM computes them, not as transformers 5 does: after a video, vLLM continues the text
at the largest vision position + 1, which includes the temporal one ((grid_t - 1) * 2 / fps * tokens_per_second),
while transformers 5.19 continues at start + max(grid_h, grid_w) / 2. They differ whenever the video is longer in
time than in space, e.g. by 3 positions for the gateway's 12 frames of 224x168 at 2 fps and by 55 for 16 frames of
56x56 at 0.5 fps.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Round:
    """One round with its expected reply: frames (T, H, W, 3 uint8), the declared fps, prompt and reply."""

    frames: np.ndarray[Any, Any]
    fps: float
    prompt: str
    reply: str
    label: str = ""


def decode_jpeg(jpeg: bytes) -> np.ndarray[Any, Any]:
    """Decode a JPEG as vLLM does (PIL, RGB)."""
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as image:
        return np.asarray(image.convert("RGB"))


def vllm_positions(input_ids: list[int], video_token_id: int, grids: list[list[int]], t_factors: list[float],
                   merge: int = 2) -> np.ndarray[Any, Any]:
    """M-RoPE positions (3, L) as vLLM 0.32's Qwen2_5_VLForConditionalGeneration.get_mrope_input_positions."""
    offsets = [i for i, tok in enumerate(input_ids)
               if tok == video_token_id and (i == 0 or input_ids[i - 1] != video_token_id)]
    parts: list[np.ndarray[Any, Any]] = []
    st = 0
    for offset, (t, h, w), t_factor in zip(offsets, grids, t_factors, strict=True):
        h, w = h // merge, w // merge
        st_idx = int(parts[-1].max()) + 1 if parts else 0
        text_len = offset - st
        parts.append(np.broadcast_to(np.arange(text_len), (3, text_len)) + st_idx)
        grid = np.indices((t, h, w))
        if t_factor != 1.0:
            grid[0] = (grid[0] * t_factor).astype(np.int64)
        parts.append(grid.reshape(3, -1) + text_len + st_idx)
        st = offset + t * h * w
    if st < len(input_ids):
        st_idx = int(parts[-1].max()) + 1 if parts else 0
        parts.append(np.broadcast_to(np.arange(len(input_ids) - st), (3, len(input_ids) - st)) + st_idx)
    return np.concatenate(parts, axis=1)


class ModelTokens:
    """A model's HF processor and the token ids that building inputs and decoding need."""

    def __init__(self, model_dir: Path) -> None:
        from transformers import AutoConfig, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.tokenizer = self.processor.tokenizer
        self.video_token_id = int(self.tokenizer.convert_tokens_to_ids("<|video_pad|>"))
        self.im_end = int(self.tokenizer.convert_tokens_to_ids("<|im_end|>"))
        pad = self.tokenizer.pad_token_id
        self.pad = int(pad if pad is not None else self.tokenizer.convert_tokens_to_ids("<|endoftext|>"))
        self.tokens_per_second = AutoConfig.from_pretrained(model_dir).vision_config.tokens_per_second


class Encoder(ModelTokens):
    """Turns rounds into model inputs exactly as vLLM would build them (chat template, processor, positions)."""

    def prompt(self, item: Round) -> dict[str, Any]:
        """Prompt-only inputs: input_ids (list), pixel_values_videos, video_grid_thw, and for the positions the
        grid (t, h, w) and the temporal factor second_per_grid_ts * tokens_per_second, as vLLM reads them."""
        from transformers.video_utils import VideoMetadata

        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": item.prompt}]}]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        n = int(item.frames.shape[0])
        # What vLLM's jpeg_sequence loader hands the HF processor for media_io_kwargs {num_frames: -1, fps: F}.
        metadata = VideoMetadata(total_num_frames=n, fps=float(item.fps), duration=n / float(item.fps),
                                 video_backend="jpeg_sequence", frames_indices=list(range(n)))
        out = self.processor(text=[text], videos=[item.frames], video_metadata=[metadata], return_tensors="pt")
        grid = out["video_grid_thw"].tolist()
        t_factors = [float(s) * self.tokens_per_second for s in out["second_per_grid_ts"].tolist()]
        ids = out["input_ids"][0].tolist()
        return {"input_ids": ids, "pixel_values_videos": out["pixel_values_videos"],
                "video_grid_thw": out["video_grid_thw"], "grid": grid, "t_factors": t_factors}

    def reply_ids(self, reply: str) -> list[int]:
        return [*self.tokenizer(reply, add_special_tokens=False)["input_ids"], self.im_end]

    def batch(self, items: list[Round]) -> dict[str, Any]:
        """A right-padded training batch with labels only on the reply and <|im_end|>."""
        import torch

        rows = []
        for item in items:
            prompt = self.prompt(item)
            reply = self.reply_ids(item.reply)
            ids = prompt["input_ids"] + reply
            positions = vllm_positions(ids, self.video_token_id, prompt["grid"], prompt["t_factors"])
            rows.append((ids, [-100] * len(prompt["input_ids"]) + reply, positions, prompt))
        length = max(len(r[0]) for r in rows)
        input_ids = torch.full((len(rows), length), self.pad, dtype=torch.long)
        labels = torch.full((len(rows), length), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        positions = torch.zeros((3, len(rows), length), dtype=torch.long)
        for i, (ids, lab, pos, _) in enumerate(rows):
            input_ids[i, :len(ids)] = torch.tensor(ids)
            labels[i, :len(ids)] = torch.tensor(lab)
            mask[i, :len(ids)] = 1
            positions[:, i, :len(ids)] = torch.from_numpy(np.ascontiguousarray(pos))
        return {
            "input_ids": input_ids, "labels": labels, "attention_mask": mask, "position_ids": positions,
            "pixel_values_videos": torch.cat([r[3]["pixel_values_videos"] for r in rows]),
            "video_grid_thw": torch.cat([r[3]["video_grid_thw"] for r in rows]),
        }
