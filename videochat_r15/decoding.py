"""Greedy decoding of Qwen2.5-VL inputs step by step with vLLM's M-RoPE positions (torch): transformers' generate()
places the text after a video at other positions than vLLM does, so it would not check what vLLM serves."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from videochat_r15.inputs import Encoder, ModelTokens, Round, vllm_positions


def greedy(model: Any, encoder: Encoder, item: Round, max_new_tokens: int = 48) -> tuple[str, float]:
    """Greedy decode of one round with vLLM's positions; see ``decode_greedy``."""
    return decode_greedy(model, encoder, encoder.prompt(item), max_new_tokens)


def decode_greedy(model: Any, tokens: ModelTokens, prompt: dict[str, Any], max_new_tokens: int) -> tuple[str, float]:
    """Greedy decode of prompt inputs (as ``Encoder.prompt`` builds them) with vLLM's positions: HF's generate
    places the text after the video differently.

    Returns the text and the smallest gap between the chosen and the runner-up logit: how far the weakest
    step is from flipping, as bfloat16 arithmetic in vLLM might make it.
    """
    import torch

    ids = prompt["input_ids"]
    positions = torch.from_numpy(np.ascontiguousarray(
        vllm_positions(ids, tokens.video_token_id, prompt["grid"], prompt["t_factors"])))[:, None, :]
    next_pos = int(positions.max()) + 1
    dtype = next(model.parameters()).dtype
    out: list[int] = []
    margin = math.inf
    with torch.no_grad():
        result = model(input_ids=torch.tensor([ids]), position_ids=positions, use_cache=True,
                       pixel_values_videos=prompt["pixel_values_videos"].to(dtype),
                       video_grid_thw=prompt["video_grid_thw"])
        for _ in range(max_new_tokens):
            top = result.logits[0, -1].topk(2)
            token = int(top.indices[0])
            margin = min(margin, float(top.values[0] - top.values[1]))
            if token in (tokens.im_end, tokens.pad):
                break
            out.append(token)
            pos = torch.full((3, 1, 1), next_pos, dtype=torch.long)
            next_pos += 1
            result = model(input_ids=torch.tensor([[token]]), position_ids=pos,
                           past_key_values=result.past_key_values, use_cache=True)
    return str(tokens.tokenizer.decode(out, skip_special_tokens=True)), margin
