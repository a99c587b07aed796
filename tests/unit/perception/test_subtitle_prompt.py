"""gateway.perception.subtitles: eval_longvideo.py's wording and line selection, and thinning to a budget."""

from __future__ import annotations

from gateway.media.subtitles import Line
from gateway.perception.subtitles import covered, thin, with_subtitles
from videochat_r15.prompts import round_prompt


def test_the_preamble_is_eval_longvideos_byte_for_byte() -> None:
    lines = [Line(0.5, 1.8, "The red fox jumps."), Line(2.5, 3.9, "Over the lazy dog.")]
    question = round_prompt("Who jumps?", ["A. fox", "B. dog"], glue=True)
    # eval_longvideo.py: f"This video's subtitles are listed below: \n{interleaved_prefix}.\n Select the best
    # answer to the following multiple-choice question based on the video and the subtitles. " + QA_THINK_GLUE
    assert with_subtitles(question, lines, multiple_choice=True) == (
        "This video's subtitles are listed below: \nThe red fox jumps.\nOver the lazy dog..\n Select the best "
        "answer to the following multiple-choice question based on the video and the subtitles. " + question)
    assert with_subtitles("Q", lines, multiple_choice=False).endswith(
        "dog..\n Answer the following question based on the video and the subtitles. Q")
    assert with_subtitles(question, [], multiple_choice=True) == question


def test_a_line_is_kept_when_a_frame_time_falls_strictly_inside_it() -> None:
    long = Line(2.0, 4.0, "long")
    short = Line(10.0, 10.2, "short")  # counts as 9.6..10.6 around its middle, as upstream widens it
    assert covered([long, short], [1.0, 2.0, 4.0]) == []  # the ends themselves do not count
    assert covered([long, short], [3.0]) == [long]
    assert covered([long, short], [10.5]) == [short]
    assert covered([long, short], [9.5, 10.7]) == []


def test_thinning_keeps_an_even_spread_within_the_budget() -> None:
    lines = [Line(float(i), i + 1.0, f"line {i:02d}") for i in range(20)]  # 8 bytes + newline each
    assert thin(lines, 1000) == lines
    kept = thin(lines, 45)
    assert [line.text for line in kept] == ["line 00", "line 04", "line 08", "line 12", "line 16"]
    assert thin(lines, 3) == []
