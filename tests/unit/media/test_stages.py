"""What an operator sees of the media library's stages on /metrics: ``vchat_media_stage_seconds{stage}``."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.media.library import open_library
from gateway.metrics import Metrics
from tests.support.clips import make_clip
from tests.support.origin import Origin
from vchat_settings import Settings


def stage_counts(metrics: Metrics) -> dict[str, tuple[float, float]]:
    """(count, sum) per stage, read from the exposition text a Prometheus scrape gets."""
    samples = {(s.name, s.labels.get("stage")): s.value
               for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
               if family.name == "vchat_media_stage_seconds" for s in family.samples}
    stages = {stage for name, stage in samples if stage is not None}
    return {stage: (samples["vchat_media_stage_seconds_count", stage], samples["vchat_media_stage_seconds_sum", stage])
            for stage in stages}


async def test_a_cold_video_shows_each_stage_once_and_a_warm_one_none(tmp_path: Path, origin: Origin) -> None:
    url = origin.file("/clip.mp4", make_clip(2.0, "160x120", 10).read_bytes())
    settings = Settings(vllm_url=None, media_dir=tmp_path / "media", media_allowed_hosts=["127.0.0.1"])
    metrics = Metrics()
    assert stage_counts(metrics) == {stage: (0.0, 0.0) for stage in ("fetch", "probe", "sanitize", "transcribe",
                                                                     "index", "frames")}
    async with open_library(settings, metrics) as library:
        asset = await library.from_url(url)
        total = await library.frame_count(asset)
        await library.frames(asset, [0, total // 2, total - 1], width=160, height=120)
        cold = stage_counts(metrics)
        assert {stage: count for stage, (count, _) in cold.items()} == {
            "fetch": 1, "probe": 1, "sanitize": 1, "transcribe": 0, "index": 1, "frames": 1}  # VCHAT_TRANSCRIBE off
        assert all(seconds > 0 for count, seconds in cold.values() if count)

        # The same question again: the video, its index and its frames all come from the cache.
        again = await library.from_url(url)
        await library.frames(again, [0, total // 2, total - 1], width=160, height=120)
        assert stage_counts(metrics) == cold
