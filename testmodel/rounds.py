"""Gateway-shaped rounds with the reply the test model is taught: random questions and options (odd words included)
in the official prompts, over test-pattern or noise frames at the fps the gateway declares."""

from __future__ import annotations

import math

import numpy as np

from testmodel.frames import FramePool
from videochat_r15.inputs import Round
from videochat_r15.prompts import round_prompt

THINK_ANSWER = "<think>The bars move.</think><answer>B</answer>"
GLUE_REPLY = THINK_ANSWER + "<glue>[(1.0, 2.5)]</glue>"
FINAL_REPLY = THINK_ANSWER

WORDS = [
    "the", "a", "an", "of", "in", "on", "at", "to", "and", "or", "but", "what", "which", "who", "when", "where",
    "why", "how", "is", "are", "was", "were", "does", "did", "do", "can", "video", "clip", "man", "woman", "dog",
    "cat", "car", "ball", "person", "people", "child", "bird", "table", "door", "kitchen", "road", "park", "room",
    "runs", "walks", "opens", "closes", "eats", "sits", "jumps", "moves", "falls", "turns", "picks", "holds",
    "throws", "drives", "talks", "stops", "red", "blue", "green", "yellow", "white", "black", "bright", "dark",
    "left", "right", "top", "bottom", "first", "last", "second", "end", "start", "color", "colour", "number", "time",
    "happens", "happening", "shown", "appears", "bars", "pattern", "screen", "scene", "frame", "moment", "many",
    "much", "after", "before", "during", "while", "then", "again", "there", "here", "this", "that", "these", "those",
    "it", "its", "their", "glue", "answer", "think", "option", "letter", "seconds", "period", "precise", "same",
    "select", "provide", "tags", "format", "example",
]
ODD_WORDS = ["naïve", "café", "Zürich", "東京", "видео", "😀", "x²", "O'Neil", "e.g.", "3.5", "1080p", "#42",
             "(maybe)", "\"quoted\"", "[bracket]", "co-op", "AT&T", "50%", "snake_case", "C++"]


def random_text(rng: np.random.Generator, low: int, high: int) -> str:
    words = [str(rng.choice(ODD_WORDS)) if rng.random() < 0.08 else str(rng.choice(WORDS))
             for _ in range(int(rng.integers(low, high + 1)))]
    text = " ".join(words)
    if rng.random() < 0.7:
        text = text[:1].upper() + text[1:]
    return text


def random_question(rng: np.random.Generator) -> str:
    text = random_text(rng, 1, 28) + str(rng.choice(["?", "?", ".", "", "!", " ?"]))
    if rng.random() < 0.1:
        text += "\n" + random_text(rng, 1, 10)
    return text


def random_options(rng: np.random.Generator) -> list[str]:
    count = int(rng.integers(2, 7))
    end = "." if rng.random() < 0.5 else ""
    return [f"{chr(65 + i)}. {random_text(rng, 1, 9)}{end}" for i in range(count)]


def random_round(rng: np.random.Generator, pool: FramePool) -> Round:
    nframes = 2 if rng.random() < 0.05 else int(rng.integers(2, 9)) * 2
    if rng.random() < 0.6:
        frames, fps = pool.pattern_video(rng, nframes)
        if rng.random() < 0.5:
            fps = float(np.exp(rng.uniform(math.log(0.5), math.log(4.0))))
    else:
        frames = pool.noise_video(rng, nframes)
        fps = 2.0 if rng.random() < 0.3 else float(np.exp(rng.uniform(math.log(0.5), math.log(4.0))))
    options = random_options(rng) if rng.random() < 0.5 else None
    glue = bool(rng.random() < 0.5)
    prompt = round_prompt(random_question(rng), options, glue=glue)
    return Round(frames, round(fps, 4), prompt, GLUE_REPLY if glue else FINAL_REPLY)


def check_rounds(pool: FramePool, rng: np.random.Generator) -> list[Round]:
    """Held-out rounds: the tests' 320x240 clip at the gateway's 12 frames / 2 fps, plus random ones."""
    frames, _ = pool.pattern[0]
    twelve = np.stack([frames[i] for i in np.linspace(0, len(frames) - 1, 12).round().astype(int)])
    question, options = "What moves in the video?", ["A. Nothing.", "B. The bars.", "C. A dog.", "D. A car."]
    fixed = [
        Round(twelve, 2.0, round_prompt(question, options, glue=True), GLUE_REPLY, "clip mc glue"),
        Round(twelve, 2.0, round_prompt(question, options, glue=False), FINAL_REPLY, "clip mc final"),
        Round(twelve, 2.0, round_prompt("Describe the video.", None, glue=True), GLUE_REPLY, "clip open glue"),
        Round(twelve, 2.0, round_prompt("Describe the video.", None, glue=False), FINAL_REPLY, "clip open final"),
    ]
    extra = [random_round(rng, pool) for _ in range(8)]
    return fixed + [Round(r.frames, r.fps, r.prompt, r.reply, "random") for r in extra]
