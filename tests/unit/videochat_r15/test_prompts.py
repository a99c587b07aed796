"""videochat_r15.prompts: the official R1.5 prompt text, option detection and reply parsing."""

from __future__ import annotations

import dataclasses

import pytest

from videochat_r15.prompts import Reply, parse_reply, round_prompt, split_options

OPTIONS = ["A. Apples.", "B. Candles.", "C. Berries.", "D. The three kinds are of the same number."]
QUESTION = "Which kind of decoration has the largest number?"

# Videochat-R1.5/src_eval/eval_videomme.py, QA_THINK_GLUE, filled as the script fills it.
MC_GLUE = (
    'Answer the question: "Which kind of decoration has the largest number?" according to the content of the '
    "video. Select the answer from :A. Apples.\nB. Candles.\nC. Berries.\nD. The three kinds are of the same "
    "number.\n.\n\nOutput your think process within the  <think> </think> tags.\n\nThen, provide your answer "
    "within the <answer> </answer> tags, output the corresponding letter of the option. At the same time, in the "
    "<glue> </glue> tags, present the precise time period in seconds of the video clips on which you base your "
    "answer to this question in the format of [(s1, e1), (s2, e2), ...]. For example: <think>...</think><answer>A"
    "</answer><glue>[(5.2, 10.4)]</glue>.\n"
)
# Videochat-R1.5/src_eval/eval_videommmu.py, QA_THINK (the final round).
MC_FINAL = (
    'Answer the question: "Which kind of decoration has the largest number?" according to the content of the '
    "video. Select the answer from :A. Apples.\nB. Candles.\nC. Berries.\nD. The three kinds are of the same "
    "number.\n.\n\nOutput your think process within the  <think> </think> tags.\n\nThen, provide your answer "
    "within the <answer> </answer> tags, output the corresponding letter of the option. For example: <think>..."
    "</think><answer>A</answer><glue>[(5.2, 10.4)]</glue>.\n"
)
OPEN_GLUE = (
    'Answer the question: "What happens in the video?" according to the content of the video.\n\nOutput your '
    "think process within the  <think> </think> tags.\n\nThen, provide your answer within the <answer> </answer> "
    "tags. At the same time, in the <glue> </glue> tags, present the precise time period in seconds of the video "
    "clips on which you base your answer to this question in the format of [(s1, e1), (s2, e2), ...]. For "
    "example: <think>...</think><answer>A</answer><glue>[(5.2, 10.4)]</glue>.\n"
)
OPEN_FINAL = (
    'Answer the question: "What happens in the video?" according to the content of the video.\n\nOutput your '
    "think process within the  <think> </think> tags.\n\nThen, provide your answer within the <answer> </answer> "
    "tags. For example: <think>...</think><answer>A</answer><glue>[(5.2, 10.4)]</glue>.\n"
)


def test_multiple_choice_intermediate_round_is_the_official_text() -> None:
    assert round_prompt(QUESTION, OPTIONS, glue=True) == MC_GLUE


def test_multiple_choice_final_round_is_the_official_text() -> None:
    assert round_prompt(QUESTION, OPTIONS, glue=False) == MC_FINAL


def test_open_ended_intermediate_round() -> None:
    assert round_prompt("What happens in the video?", None, glue=True) == OPEN_GLUE


def test_open_ended_final_round() -> None:
    assert round_prompt("What happens in the video?", None, glue=False) == OPEN_FINAL


@pytest.mark.parametrize("glue", [True, False])
def test_every_round_asks_for_think(glue: bool) -> None:
    for options in (OPTIONS, None):
        assert "Output your think process within the  <think> </think> tags." in round_prompt("q", options, glue=glue)


def test_open_ended_has_no_option_wording() -> None:
    for glue in (True, False):
        prompt = round_prompt("q", None, glue=glue)
        assert "Select the answer" not in prompt
        assert "letter" not in prompt
        assert "[OPTION]" not in prompt


def test_empty_options_mean_open_ended() -> None:
    assert round_prompt("What happens in the video?", [], glue=True) == OPEN_GLUE


def test_placeholders_in_the_question_are_not_substituted() -> None:
    prompt = round_prompt('Is "[OPTION]" or [QUESTION] literal?', ["A. yes", "B. no"], glue=True)
    assert 'Answer the question: "Is "[OPTION]" or [QUESTION] literal?" according' in prompt
    assert "Select the answer from :A. yes\nB. no\n.\n" in prompt


# --- split_options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "What is shown?\nA. a dog\nB. a cat\nC. a bird",
        "What is shown?\n(A) a dog\n(B) a cat\n(C) a bird",
        "What is shown?\nA) a dog\nB) a cat\nC) a bird",
        "What is shown?\nA: a dog\nB: a cat\nC: a bird",
        "What is shown?\n  A.a dog  \n\n  B.  a cat\n C)a bird\n",
        "What is shown?\nOptions:\nA. a dog\nB. a cat\nC. a bird",
        "What is shown?\n\nChoices\n(A) a dog\n(B) a cat\n(C) a bird\n",
    ],
)
def test_split_options_formats(text: str) -> None:
    assert split_options(text) == ("What is shown?", ["A. a dog", "B. a cat", "C. a bird"])


def test_split_options_keeps_text_after_the_block() -> None:
    text = "Which one moves?\nA. left\nB. right\nAnswer with the letter."
    assert split_options(text) == ("Which one moves?\nAnswer with the letter.", ["A. left", "B. right"])


def test_split_options_stops_at_a_gap_in_the_letters() -> None:
    assert split_options("Pick one.\nA. x\nB. y\nD. z") == ("Pick one.\nD. z", ["A. x", "B. y"])


@pytest.mark.parametrize(
    "text",
    [
        "What is happening in this video?",
        "Pick one.\nA. only one option",
        "Pick one.\nB. x\nC. y",
        "Pick one.\na. x\nb. y",
        "Pick one. A. x B. y",  # inline options are not split
        "A. x\nB. y",  # no question besides the options
        "",
    ],
)
def test_split_options_leaves_other_text_alone(text: str) -> None:
    assert split_options(text) == (text, None)


def test_split_options_takes_the_last_block() -> None:
    text = "Context:\nA. first\nB. second\nWhich is right?\nA. yes\nB. no"
    question, options = split_options(text)
    assert question == "Context:\nA. first\nB. second\nWhich is right?"
    assert options == ["A. yes", "B. no"]


def test_split_options_round_trips_into_the_official_prompt() -> None:
    question, options = split_options(QUESTION + "\n" + "\n".join(OPTIONS))
    assert round_prompt(question, options, glue=True) == MC_GLUE


# --- parse_reply -----------------------------------------------------------------------------------------


def test_parse_full_reply() -> None:
    reply = parse_reply("<think>The bars move.</think><answer>B</answer><glue>[(1.0, 2.5)]</glue>")
    assert reply == Reply(think="The bars move.", answer="B", glue_text="[(1.0, 2.5)]")


def test_parse_final_round_reply_has_no_glue() -> None:
    assert parse_reply("<think>t</think><answer>B</answer>") == Reply("t", "B", None)


def test_parse_no_tags() -> None:
    assert parse_reply("just text") == Reply(None, None, None)


def test_parse_answer_is_first_match_and_multiline() -> None:
    reply = parse_reply("<answer>\nline one\nline two\n</answer> <answer>C</answer>")
    assert reply.answer == "line one\nline two"


def test_parse_empty_answer_is_empty_not_none() -> None:
    assert parse_reply("<answer></answer>").answer == ""


def test_parse_unclosed_tags_run_to_the_next_tag() -> None:
    reply = parse_reply("<think>thinking<answer>B<glue>[(1.0, 2.5)]")
    assert reply == Reply("thinking", "B", "[(1.0, 2.5)]")


def test_parse_truncated_reply() -> None:
    assert parse_reply("<think>The bars mo") == Reply("The bars mo", None, None)


def test_parse_close_without_open_think() -> None:
    assert parse_reply("reasoning here</think><answer>A</answer>") == Reply("reasoning here", "A", None)


def test_parse_answer_text_is_never_evaluated() -> None:
    reply = parse_reply("<answer>__import__('os')</answer><glue>[(1, 2)] + [exit()]</glue>")
    assert reply.answer == "__import__('os')"
    assert reply.glue_text == "[(1, 2)] + [exit()]"


def test_reply_is_frozen() -> None:
    reply = parse_reply("<answer>A</answer>")
    with pytest.raises(dataclasses.FrozenInstanceError):
        reply.answer = "B"  # type: ignore[misc]
