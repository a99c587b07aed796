# Builds a Qwen2.5-VL-7B-shaped model directory (config + tokenizer + processor, no weights)
# for vLLM --load-format dummy.
import json
import pathlib
import string
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

out = sys.argv[1]
V = 152064
specials = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
alphabet = pre_tokenizers.ByteLevel.alphabet()
vocab = {s: i for i, s in enumerate(specials)}
for ch in sorted(alphabet):
    vocab.setdefault(ch, len(vocab))
letters = string.ascii_lowercase
i = 0
while len(vocab) < V:
    n, s = i, ""
    while True:
        s = letters[n % 26] + s
        n //= 26
        if n == 0:
            break
    vocab.setdefault("x" + s, len(vocab))
    i += 1
tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tmpl = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' or 'image' in c or 'image_url' in c %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'video' or 'video' in c or 'video_url' in c %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in c %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ft = PreTrainedTokenizerFast(
    tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", additional_special_tokens=specials[1:]
)
ft.chat_template = tmpl
cfg = Qwen2_5_VLConfig(
    text_config=dict(
        vocab_size=V,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        max_position_embeddings=128000,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        eos_token_id=2,
        bos_token_id=0,
        pad_token_id=0,
        sliding_window=32768,
        use_sliding_window=False,
    ),
    vision_config=dict(
        depth=32,
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        out_hidden_size=3584,
        fullatt_block_indexes=[7, 15, 23, 31],
        window_size=112,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        tokens_per_second=2,
        in_chans=3,
    ),
    image_token_id=6,
    video_token_id=7,
    vision_start_token_id=3,
    vision_end_token_id=4,
    tie_word_embeddings=False,
)
cfg.architectures = ["Qwen2_5_VLForConditionalGeneration"]
cfg.dtype = "bfloat16"
cfg.save_pretrained(out)
pathlib.Path(out, "generation_config.json").write_text(
    json.dumps({"eos_token_id": 2, "pad_token_id": 0, "bos_token_id": 0})
)
proc = Qwen2_5_VLProcessor(
    image_processor=Qwen2VLImageProcessor(), tokenizer=ft, video_processor=Qwen2VLVideoProcessor(), chat_template=tmpl
)
proc.save_pretrained(out)
print("ok", len(vocab))
