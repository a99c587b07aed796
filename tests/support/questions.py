"""A video question as a client sends it to the gateway: the clip inline as a data URL, then the text."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx

from tests.support.vllm_wire import MODEL


def ask_inline(gateway_url: str, clip: Path, question: str, *, timeout: float = 300, **vchat: Any) -> dict[str, Any]:
    """The gateway's answer (asserted 200) to ``question`` about ``clip``, in 2 rounds of 8 frames unless ``vchat``
    says otherwise."""
    url = "data:video/mp4;base64," + base64.b64encode(clip.read_bytes()).decode()
    body = {"model": MODEL, "vchat": {"iterations": 2, "max_frames": 8, **vchat},
            "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                                      {"type": "text", "text": question}]}]}
    response = httpx.post(f"{gateway_url}/v1/chat/completions", json=body, timeout=timeout)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer
