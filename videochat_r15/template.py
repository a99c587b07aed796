"""Qwen2.5-VL's chat template as a round's budget sees it: the allowance around one user turn, and a bound on the
tokens of a round's text."""

from __future__ import annotations

# Qwen2.5-VL's chat template around one user turn: the default system line, role and vision markers (~30).
TEMPLATE_TOKENS = 64


def text_tokens(text: str) -> int:
    """An upper bound on the tokens of a round's text: a byte-level BPE token is never shorter than one byte."""
    return len(text.encode()) + TEMPLATE_TOKENS
