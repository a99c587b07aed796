"""The transcription worker: ``python -m gateway.media.asr_worker JOB_JSON`` runs faster-whisper on one file of
16 kHz mono s16le PCM and prints its segments as one JSON object on stdout.

It is its own process (started by ``speech.transcribe``) so that killing it stops the work at once, its memory is
bounded by ``RLIMIT_AS`` (set before faster-whisper is imported) and given back whole when it ends, and neither the
model's threads nor its allocations touch the gateway's. It reads nothing but the job and the audio file.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any

SAMPLE_RATE = 16000
# Silero pads each speech region it finds by this much on both sides (faster-whisper's default is 400 ms): a line
# then starts at most this early before the speech it holds.
SPEECH_PAD_MS = 200


def pick_device(requested: str, gpu_present: bool) -> tuple[str, str]:
    """faster-whisper's device and compute type for VCHAT_ASR_DEVICE: a GPU in float16 when asked for, or for "auto"
    when there is one (an hour of speech in a minute or two, where the CPU takes about as long as the speech); else
    the CPU in int8."""
    if requested == "cuda" or (requested == "auto" and gpu_present):
        return "cuda", "float16"
    return "cpu", "int8"


def run(job: dict[str, Any], device: str = "cpu", compute_type: str = "int8") -> dict[str, Any]:
    """faster-whisper's batched pipeline on the job's audio: Silero VAD finds the speech, each region (merged up to
    30 s) is one segment, its text sampled greedily and bounded by ``max_new_tokens``."""
    import numpy as np
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    audio = np.fromfile(job["audio"], dtype="<i2").astype(np.float32) / 32768.0
    if audio.size < SAMPLE_RATE // 10:
        return {"language": job["language"], "segments": []}
    model = WhisperModel(job["model"], device=device, compute_type=compute_type, cpu_threads=job["threads"])
    segments, info = BatchedInferencePipeline(model).transcribe(
        audio, language=job["language"], batch_size=1, beam_size=1, vad_filter=True,
        vad_parameters={"speech_pad_ms": SPEECH_PAD_MS}, max_new_tokens=job["max_new_tokens"],
        without_timestamps=True, condition_on_previous_text=False)
    found = [[round(s.start, 3), round(s.end, 3), s.text] for s in segments]
    return {"language": info.language, "segments": found}


def main() -> None:
    job = json.loads(sys.argv[1])
    requested = job.get("device", "cpu")
    device, compute_type = pick_device(requested, bool(job.get("gpu_present")))
    if device == "cpu":  # CUDA maps far more address space than it uses: the cap can only hold on the CPU
        limit = int(job["max_memory_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        sys.stdout.write(json.dumps(run(job, device, compute_type)))
        return
    try:
        found = run(job, device, compute_type)
    except (RuntimeError, ValueError, OSError) as exc:  # no CUDA build, no cuBLAS/cuDNN, no free GPU memory
        if requested != "auto":
            raise
        # Anew on the CPU, capped: exec replaces this process (same pid and process group, so the gateway's time
        # limit and kill still hold) and with it whatever CUDA had mapped.
        sys.stderr.write(f"transcription on the GPU failed ({exc}); on the CPU instead\n")
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "gateway.media.asr_worker",
                                  json.dumps({**job, "device": "cpu"})])
    sys.stdout.write(json.dumps(found))


if __name__ == "__main__":
    main()
