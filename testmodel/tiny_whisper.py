"""Build a tiny, randomly initialised Whisper in CTranslate2's format, the one faster-whisper reads (tests, make dev).

``python -m testmodel.tiny_whisper OUT_DIR`` (in the torch environment, which has transformers and ctranslate2): a
``WhisperConfig`` model of a few MB with random weights, saved by transformers, converted by CTranslate2's own
``TransformersConverter``, with a byte-level tokenizer built here that holds every special token faster-whisper
looks up, at the ids large-v3 gives them (so the model is multilingual: 51,866 tokens, language detection works).
Its text is random; where speech is, faster-whisper's VAD decides.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

# Whisper's language tokens in Whisper's own order (large-v3's, ending with yue): faster-whisper's codes, a token
# <|xx|> each.
_CODES = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur hr bg lt la mi ml "
    "cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si km sn yo so af oc ka be tg sd gu am "
    "yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba jw su yue"
)
LANGUAGES = _CODES.split()
TEXT_TOKENS = 50257  # as GPT-2's BPE, so <|endoftext|> is 50257 as in Whisper
N_MELS = 80
SEED = 0


def special_tokens() -> list[str]:
    """Whisper large-v3's special tokens in id order, from 50257; timestamps last (faster-whisper reads the first
    one as <|notimestamps|> + 1)."""
    return ["<|endoftext|>", "<|startoftranscript|>", *(f"<|{code}|>" for code in LANGUAGES), "<|translate|>",
            "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>",
            *(f"<|{i * 0.02:.2f}|>" for i in range(1501))]


def build_tokenizer(out: Path) -> int:
    """tokenizer.json (for faster-whisper) and a transformers tokenizer (for the converter) in out; the vocabulary
    size. Text tokens: the 256 bytes, then filler words up to 50,257 (never produced by encoding; random weights
    pick them)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {char: i for i, char in enumerate(sorted(alphabet))}
    vocab.update({f"\u0120w{i}": i for i in range(len(vocab), TEXT_TOKENS - 1)})  # decoded as " w300" etc.
    # The last text token is the empty one, as in multilingual Whisper's vocabulary: CTranslate2 (4.8) calls a
    # Whisper multilingual (language detection, a language token in the prompt) only when its vocabulary holds "".
    vocab[""] = TEXT_TOKENS - 1
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = special_tokens()
    tokenizer.add_special_tokens(specials)
    assert tokenizer.token_to_id("<|endoftext|>") == TEXT_TOKENS
    tokenizer.save(str(out / "tokenizer.json"))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=specials[1:])
    fast.save_pretrained(str(out))
    return TEXT_TOKENS + len(specials)


def build_model(out: Path, vocab_size: int) -> None:
    """The random-weight WhisperForConditionalGeneration, saved with its generation config."""
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(SEED)
    eot = TEXT_TOKENS
    config = WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=N_MELS, d_model=64, encoder_layers=2, encoder_attention_heads=2,
        decoder_layers=2, decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=1500, max_target_positions=448, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        decoder_start_token_id=eot + 1, suppress_tokens=[], begin_suppress_tokens=[eot])
    model = WhisperForConditionalGeneration(config).eval()
    lang_to_id = {f"<|{code}|>": eot + 2 + i for i, code in enumerate(LANGUAGES)}
    model.generation_config = GenerationConfig(
        decoder_start_token_id=eot + 1, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        suppress_tokens=[], begin_suppress_tokens=[eot], alignment_heads=[[1, 0], [1, 1]], lang_to_id=lang_to_id,
        is_multilingual=True, max_length=448)
    model.save_pretrained(str(out))
    (out / "preprocessor_config.json").write_text(json.dumps(
        {"feature_size": N_MELS, "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30, "n_fft": 400}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="directory to write the CTranslate2 model to (must not exist)")
    args = parser.parse_args()
    from ctranslate2.converters import TransformersConverter

    with tempfile.TemporaryDirectory() as tmp:
        hf = Path(tmp) / "hf"
        hf.mkdir()
        build_model(hf, build_tokenizer(hf))
        TransformersConverter(str(hf), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
            str(args.out), quantization="float32")
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"tiny whisper: {args.out} ({size / 2**20:.1f} MB)")
    shutil.rmtree(args.out / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()
