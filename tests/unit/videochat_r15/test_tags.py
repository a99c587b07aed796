"""videochat_r15.tags: the streamed split of a reply matches the official answer at any chunk boundary."""

from __future__ import annotations

import pytest

from videochat_r15.prompts import parse_reply
from videochat_r15.tags import Channel, TagSplitter


def split(chunks: list[str]) -> dict[Channel, str]:
    splitter = TagSplitter()
    pieces = [piece for chunk in chunks for piece in splitter.feed(chunk)] + splitter.close()
    joined: dict[Channel, str] = {}
    for channel, text in pieces:
        joined[channel] = joined.get(channel, "") + text
    assert splitter.answer == joined.get("content", "")
    return joined


def every_split(text: str) -> list[list[str]]:
    """The text whole, one character at a time, and cut in two (or three) at every place."""
    cuts = [[text], list(text)]
    cuts += [[text[:i], text[i:]] for i in range(1, len(text))]
    cuts += [[text[:i], text[i:j], text[j:]] for i in range(1, len(text)) for j in range(i + 1, len(text), 3)]
    return cuts


CASES: list[tuple[str, dict[Channel, str]]] = [
    ("<think>The bars move.</think><answer>B</answer><glue>[(1.0, 2.5)]</glue>",
     {"reasoning": "The bars move.", "content": "B", "glue": "[(1.0, 2.5)]"}),
    # The template opened the think block: the reasoning must not leak into the answer.
    ("The bars move.</think>\n<answer>B</answer>", {"reasoning": "The bars move.", "content": "B"}),
    # Whitespace between words is the answer's, not noise between tags.
    ("First paragraph.\n\nSecond", {"content": "First paragraph.\n\nSecond"}),
    ("<answer>First paragraph.\n\nSecond</answer>", {"content": "First paragraph.\n\nSecond"}),
    # Cut off inside <think>: the official code returns the text it has.
    ("<think>The bars mo", {"reasoning": "The bars mo", "content": "The bars mo"}),
    # Bodies are stripped as parse_reply strips them; whitespace between tags is dropped.
    ("<think>\n a \n\n b \n</think>\n\n<answer> B </answer>\n", {"reasoning": "a \n\n b", "content": "B"}),
    # The first <answer> is the answer (upstream's regex); text outside tags then is not.
    ("Sure. <answer>B</answer> and <answer>C</answer>", {"content": "B"}),
    ("<think>t</think>The bars.\n\nThey move.", {"reasoning": "t", "content": "The bars.\n\nThey move."}),
    ("<answer>B", {"content": "B"}),
    ("x < y and <b>bold</b> <thin", {"content": "x < y and <b>bold</b> <thin"}),
    ("<answer></answer>", {}),
    ("", {}),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_split_is_the_same_at_every_chunk_boundary(text: str, expected: dict[Channel, str]) -> None:
    for chunks in every_split(text):
        assert split(chunks) == expected, chunks


@pytest.mark.parametrize("text", [text for text, _ in CASES if "<answer>" in text or "</think>" in text])
def test_streamed_answer_and_think_equal_parse_reply(text: str) -> None:
    reply, streamed = parse_reply(text), split([text])
    if reply.answer is not None:
        assert streamed.get("content", "") == reply.answer
    if reply.think is not None:
        assert streamed["reasoning"] == reply.think


def test_answer_streams_before_the_reply_ends() -> None:
    splitter = TagSplitter()
    assert splitter.feed("<think>look") == [("reasoning", "look")]
    assert splitter.feed("ing </think><answer>B") == [("reasoning", "ing"), ("content", "B")]
    assert splitter.feed(" and C ") == [("content", " and C")]
    assert splitter.close() == []


def test_text_outside_tags_waits_for_the_end() -> None:
    splitter = TagSplitter()
    assert splitter.feed("maybe reasoning, maybe the answer") == []
    assert splitter.close() == [("content", "maybe reasoning, maybe the answer")]


def test_random_chunkings_of_a_long_reply_agree() -> None:
    import random

    text = ("<think>The bars < the ball; <b>then</b> they move.\n\n Later</think>\n<answer> B, because the "
            "bars move </answer><glue>[(1.0, 2.5), (3.1, 4.0)]</glue> trailing <answer>C</answer>")
    whole = split([text])
    assert whole == {"reasoning": "The bars < the ball; <b>then</b> they move.\n\n Later",
                     "content": "B, because the bars move", "glue": "[(1.0, 2.5), (3.1, 4.0)]"}
    rng = random.Random(14)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 12)))
        chunks = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert split(chunks) == whole, chunks


def test_a_lone_angle_bracket_is_released_once_it_cannot_be_a_tag() -> None:
    splitter = TagSplitter()
    assert splitter.feed("<answer>x <") == [("content", "x")]
    assert splitter.feed("y") == [("content", " <y")]  # "<y" starts no tag: nothing held back any more
    assert splitter.feed(" </ans") == []  # could still be </answer>
    assert splitter.feed("wer> after") == []
    assert splitter.close() == []
    assert splitter.answer == "x <y"
