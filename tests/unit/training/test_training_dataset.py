"""Dataset validation runs without torch: every bad line is reported at once, with its line number, exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.clips import make_clip
from training.conversation import ConversationError, Turn, gateway_prompt, parse_messages, parse_text, prompted
from training.dataset import DatasetInvalid, load_dataset
from training.frames import FrameSettings
from vchat_settings import Settings
from videochat_r15.prompts import round_prompt

ROOT = Path(__file__).resolve().parents[3]
REPLY = "<think>a red square</think><answer>C</answer>"


def _line(obj: object) -> str:
    return json.dumps(obj)


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    clip = make_clip(seconds=2.0, size="160x120", fps=10, audio=False)
    data = tmp_path / "data"
    data.mkdir()
    (data / "clip.mp4").write_bytes(clip.read_bytes())  # relative paths resolve against the dataset's folder
    (data / "notes.mp4").write_text("just some text, not a video\n")
    (data / "folder.mp4").mkdir()
    lines = [
        _line({"video_path": "clip.mp4", "text": f"USER: What is shown?\nASSISTANT: {REPLY}"}),          # 1 ok
        '{"video_path": "clip.mp4", "text": "USER: hi',                                                  # 2 JSON
        _line(["clip.mp4", "USER: a\nASSISTANT: b"]),                                                    # 3 list
        _line({"video_path": "missing.mp4", "text": f"USER: q\nASSISTANT: {REPLY}"}),                    # 4 missing
        _line({"video_path": "notes.mp4", "text": f"USER: q\nASSISTANT: {REPLY}"}),                      # 5 not video
        _line({"video_path": "clip.mp4", "text": "USER: where is the assistant?"}),                      # 6 no reply
        _line({"video_path": "clip.mp4", "text": "   "}),                                                # 7 empty
        _line({"video_path": "clip.mp4", "messages": [{"role": "narrator", "content": "x"},
                                                      {"role": "assistant", "content": REPLY}]}),        # 8 role
        _line({"video_path": "folder.mp4", "text": f"USER: q\nASSISTANT: {REPLY}"}),                     # 9 dir
        "",                                                                                              # 10 blank
        _line({"video_path": "clip.mp4", "messages": [{"role": "user", "content": "q"},
                                                      {"role": "assistant", "content": REPLY}]}),        # 11 ok
        _line({"text": f"USER: q\nASSISTANT: {REPLY}"}),                                                 # 12 no video
        _line({"video_path": "clip.mp4", "text": "USER: q\nASSISTANT:   "}),                            # 13 empty reply
    ]
    path = data / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


EXPECTED = {
    2: "not valid JSON",
    3: "expected a JSON object, got list",
    4: "does not exist",
    5: "not a video: it looks like a text file",
    6: "no assistant turn",
    7: "'text' is empty",
    8: "unknown role 'narrator'",
    9: "is not a file",
    12: "'video_path' is missing",
    13: "turn 2 (assistant) is empty",
}


def test_cli_reports_every_bad_line_and_writes_nothing(broken: Path, tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    out = tmp_path / "adapters" / "mine"
    # The gateway's environment has no torch: validation must not need it.
    proc = subprocess.run([sys.executable, "-m", "training.finetune", "--data", str(broken), "--base", str(base),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    report = proc.stderr
    assert "10 of 13 lines are invalid; nothing was trained" in report
    reported = [line.strip() for line in report.splitlines() if line.strip().startswith("line ")]
    assert [int(line.split(":")[0].split()[1]) for line in reported] == sorted(EXPECTED)
    for number, reason in EXPECTED.items():
        assert any(line.startswith(f"line {number}:") and reason in line for line in reported), (number, report)
    assert not (tmp_path / "adapters").exists()


def test_valid_lines_load_with_the_gateways_frames(tmp_path: Path) -> None:
    clip = make_clip()  # 6 s, 320x240, 30 fps: the gateway sends 12 frames of 392x280 at 2 fps
    data = tmp_path / "ok.jsonl"
    data.write_text(_line({"video_path": str(clip), "text": f"USER: What moves?\nASSISTANT: {REPLY}"}) + "\n")
    dataset = load_dataset(data, tmp_path / "work", FrameSettings.from_settings(Settings(), None, None))
    frames = dataset.frames[clip]
    assert (len(frames.jpegs), frames.width, frames.height, frames.fps) == (12, 392, 280, 2.0)
    assert all(path.read_bytes()[:2] == b"\xff\xd8" for path in frames.jpegs)
    assert len(dataset.sha256) == 64 and dataset.samples[0].turns[-1] == Turn("assistant", REPLY)


def test_a_missing_dataset_and_an_empty_one_are_reported(tmp_path: Path) -> None:
    config = FrameSettings.from_settings(Settings(), None, None)
    with pytest.raises(DatasetInvalid) as missing:
        load_dataset(tmp_path / "nope.jsonl", tmp_path, config)
    assert "cannot read the dataset" in missing.value.report()
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DatasetInvalid) as empty:
        load_dataset(tmp_path / "empty.jsonl", tmp_path, config)
    assert "the dataset has no samples" in empty.value.report()


def test_text_form_turns() -> None:
    turns = parse_text("SYSTEM: be brief\nUSER: first?\nASSISTANT: one\nUSER: and\nthen?\nASSISTANT: two")
    assert turns == (Turn("system", "be brief"), Turn("user", "first?"), Turn("assistant", "one"),
                     Turn("user", "and\nthen?"), Turn("assistant", "two"))
    for bad, reason in [("hello\nUSER: q\nASSISTANT: a", "must start with 'USER:'"),
                        ("ASSISTANT: a", "turn 1 is from the assistant"),
                        ("USER: q\nASSISTANT: a\nUSER: dangling", "has no assistant reply"),
                        ("USER: q\nSYSTEM: late\nASSISTANT: a", "system turn may only come first")]:
        with pytest.raises(ConversationError, match=reason):
            parse_text(bad)


def test_messages_form_accepts_text_parts_and_refuses_media_parts() -> None:
    parts = [{"type": "text", "text": "What "}, {"type": "text", "text": "moves?"}]
    turns = parse_messages([{"role": "user", "content": parts}, {"role": "assistant", "content": "B"}])
    assert turns[0] == Turn("user", "What moves?")
    with pytest.raises(ConversationError, match="video comes from 'video_path'"):
        parse_messages([{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "x"}}]},
                        {"role": "assistant", "content": "B"}])


def test_r15_prompt_is_the_gateways_final_round() -> None:
    text = "What moves in the video?\nA. nothing\nB. the bars\nC. a dog"
    expected = round_prompt("What moves in the video?", ["A. nothing", "B. the bars", "C. a dog"], glue=False)
    assert gateway_prompt(text) == expected
    assert gateway_prompt("  Describe   the video. ") == round_prompt("Describe the video.", None, glue=False)
    turns = (Turn("user", text), Turn("assistant", REPLY))
    assert prompted(turns, "r15") == (Turn("user", expected), Turn("assistant", REPLY))
    assert prompted(turns, "raw") == turns
