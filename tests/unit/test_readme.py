"""The README's environment-variable table is exactly what the settings classes say."""

from __future__ import annotations

import re
import sys

from gateway.envtable import env_table
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
