"""The README's environment-variable table is exactly what the settings classes say."""

from __future__ import annotations

import re
import sys

from vchat.envtable import env_table
from vllm_launch.stack import ROOT


def test_readme_env_table_matches_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- env-table:start -->\n(.*?)<!-- env-table:end -->", readme, re.S)
    assert match, "README lost its env-table markers"
    assert match.group(1) == env_table(), "README env table is stale: regenerate it with `vchat env-table`"


def test_readme_quick_start_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make dev" in quick and "make test" in quick
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_long_video_table_matches_the_frame_plan() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from long_video_table import table

    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- long-video-table:start -->\n(.*?)<!-- long-video-table:end -->", readme, re.S)
    assert match, "README lost its long-video-table markers"
    assert match.group(1) == table(), "README long-video table is stale: regenerate it with bench/long_video_table.py"


def _backticked(text: str) -> set[str]:
    """The `names` in ``text``, leaving out what parentheses say about a name (its values, its shape)."""
    return set(re.findall(r"`([a-z_]+)`", re.sub(r"\([^()]*\)", "", text)))


def _perception_bullet(name: str) -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("- `perception` (an extra field", 1)[1].split("\n\n", 1)[0]
    match = re.search(rf"\n  - `{name}`[:,](.*?)(?=\n  - |\Z)", section, re.S)
    assert match, f"README's perception list lost its `{name}` entry"
    return match.group(1)


def test_readme_names_the_real_perception_video_keys() -> None:
    import dataclasses

    from gateway.api.answers import _video
    from gateway.media.library import LinkedVideo, VideoFacts

    fetched, linked = _perception_bullet("video").split(" — ", 1)
    assert _backticked(fetched) == {"id", *(f.name for f in dataclasses.fields(VideoFacts))}
    video = LinkedVideo(id="v", page_url="https://www.youtube.com/watch?v=x", fetch=None)  # type: ignore[arg-type]
    assert _backticked(linked) == set(_video(video))


def test_readme_names_the_real_perception_round_and_top_level_keys() -> None:
    from gateway.api.answers import AnswerBuilder
    from gateway.media.library import LinkedVideo
    from gateway.perception.loop import LoopRequest, RoundFinished, RoundStarted, Usage
    from videochat_r15.prompts import parse_reply

    request = LoopRequest(model="m", question="q", options=None, iterations=1, max_frames=4, fps=2.0, sampling={})
    video = LinkedVideo(id="v", page_url="https://www.youtube.com/watch?v=x", fetch=None)  # type: ignore[arg-type]
    builder = AnswerBuilder("m", video, request)
    builder.on_event(RoundStarted(1, True, (0.0, 0.5), 2.0, 28, 28, 1, ()))
    builder.on_event(RoundFinished(1, True, parse_reply("<answer>A</answer>"), "", "A", (), Usage(), "stop", 0.1))
    perception = builder.perception().model_dump(mode="json")
    assert _backticked(_perception_bullet("rounds")) == set(perception["rounds"][0])
    readme = (ROOT / "README.md").read_text()
    section = readme.split("- `perception` (an extra field", 1)[1].split("\n\n", 1)[0]
    top = {name for name in re.findall(r"\n  - `([a-z_]+)`", section)}
    last = re.search(r"\n  - (`segments`.*)", section, re.S)
    assert last, "README's perception list lost its last entry"
    assert top | _backticked(last.group(1)) == set(perception)


def test_readmes_link_nothing_outside_the_repository() -> None:
    for readme in [*sorted(ROOT.glob("*/README.md")), ROOT / "README.md"]:
        text = readme.read_text()
        for target in re.findall(r"\]\(([^)\s#]+)[^)]*\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            path = (readme.parent / target).resolve()
            assert path == ROOT or ROOT in path.parents, f"{readme.relative_to(ROOT)} links {target} outside the repo"
            assert path.exists(), f"{readme.relative_to(ROOT)} links {target}, which does not exist"
    launcher = (ROOT / "vllm_launch" / "README.md").read_text()
    assert not re.search(r"(?<![\w/])(\.\./)?shared/", launcher), "vllm_launch/README.md names the project's shared/"
