"""MediaStore on a real directory: layout and crash cleanup, atomic commits, the URL index, single flight, LRU, pins."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from gateway.errors import InsufficientStorage
from gateway.media import space
from gateway.media.store import MediaStore, StoredObject, url_key, write_json_atomic

KB = 1024


def oid(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> MediaStore:
    opened = MediaStore(tmp_path / "media", max_bytes=100 * KB)
    opened.open()
    return opened


def put(store: MediaStore, object_id: str, size: int, used_at: float | None = None) -> StoredObject:
    built = store.tmp / f"build-{object_id[:8]}"
    built.mkdir()
    (built / "video.mp4").write_bytes(b"\0" * size)
    (built / "facts.json").write_text("{}")
    stored = store.commit(object_id, built)
    if used_at is not None:
        os.utime(stored.dir / ".used", (used_at, used_at))
    return stored


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# --- layout and crash safety ----------------------------------------------------------------------


def test_open_creates_the_layout_and_wipes_only_tmp(tmp_path: Path) -> None:
    root = tmp_path / "media"
    (root / "tmp" / "abandoned" / "deep").mkdir(parents=True)
    (root / "tmp" / ".fetch-1.part").write_bytes(b"half")
    first = MediaStore(root, 100 * KB)
    first.open()
    kept = put(first, oid(1), 10)
    first.remember_url("http://example.test/a.mp4", kept.id)
    MediaStore(root, 100 * KB).open()  # a restart
    assert names(root) == ["objects", "tmp", "urls"]
    assert names(root / "tmp") == []
    assert names(root / "objects") == [kept.id]
    assert len(names(root / "urls")) == 1


async def test_get_returns_only_complete_objects(store: MediaStore) -> None:
    stored = put(store, oid(1), 10)
    assert await store.get(stored.id) == stored
    assert stored.video.read_bytes() == b"\0" * 10 and stored.facts_path.name == "facts.json"
    incomplete = store.objects / oid(2)
    incomplete.mkdir()
    (incomplete / "facts.json").write_text("{}")
    assert await store.get(oid(2)) is None
    for bad in ("", "abc", oid(1).upper(), "../" + oid(1)[3:], oid(1) + "0", "g" * 64):
        assert await store.get(bad) is None, bad


async def test_get_marks_the_object_as_used(store: MediaStore) -> None:
    stored = put(store, oid(1), 10, used_at=1_000_000)
    await store.get(stored.id)
    assert (stored.dir / ".used").stat().st_mtime > 1_000_000


def test_commit_is_a_rename_and_the_first_build_wins(store: MediaStore) -> None:
    winner = put(store, oid(1), 10)
    loser = store.tmp / "late-build"
    loser.mkdir()
    (loser / "video.mp4").write_bytes(b"other")
    again = store.commit(oid(1), loser)
    assert again == winner
    assert winner.video.read_bytes() == b"\0" * 10
    assert not loser.exists()
    assert names(store.tmp) == []


def test_commit_over_a_broken_object_fails_loudly(store: MediaStore) -> None:
    (store.objects / oid(1)).mkdir()
    (store.objects / oid(1) / "junk").write_text("x")  # not empty, and no video.mp4
    built = store.tmp / "build"
    built.mkdir()
    (built / "video.mp4").write_bytes(b"v")
    with pytest.raises(OSError):
        store.commit(oid(1), built)


# --- URL index ----------------------------------------------------------------------------------------


def test_url_index_round_trip(store: MediaStore) -> None:
    stored = put(store, oid(1), 10)
    url = "https://videos.example/watch?v=1&token=secret"
    store.remember_url(url, stored.id, page_url="https://videos.example/watch?v=1", is_youtube=False)
    found = store.lookup_url(url)
    assert found is not None
    assert found[0] == stored
    assert found[1]["object"] == stored.id and found[1]["page_url"] == "https://videos.example/watch?v=1"
    # The index holds hashes as names, never the URL (which may carry a token).
    assert names(store.urls) == [f"{url_key(url)}.json"]
    assert store.lookup_url(url + "&other=1") is None
    assert names(store.tmp) == []


def test_url_entry_of_a_vanished_or_unreadable_object_is_a_miss(store: MediaStore) -> None:
    store.remember_url("http://a.example/x.mp4", oid(9))
    assert store.lookup_url("http://a.example/x.mp4") is None
    (store.urls / f"{url_key('http://b.example/y.mp4')}.json").write_text("{not json")
    assert store.lookup_url("http://b.example/y.mp4") is None


def test_write_json_atomic_leaves_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "facts.json"
    write_json_atomic(target, {"a": 1}, tmp_path)
    with pytest.raises(TypeError):
        write_json_atomic(target, {"a": object()}, tmp_path)
    assert json.loads(target.read_text()) == {"a": 1}
    assert names(tmp_path) == ["facts.json"]


# --- single flight ------------------------------------------------------------------------------------


async def test_single_flight_runs_concurrent_work_once(store: MediaStore) -> None:
    runs = 0
    started, gate = asyncio.Event(), asyncio.Event()

    async def work() -> str:
        nonlocal runs
        runs += 1
        started.set()
        await gate.wait()
        return f"result {runs}"

    # The flight task is scheduled after every caller: once the work has started, all five have joined it.
    callers = [asyncio.ensure_future(store.single_flight("k", work)) for _ in range(5)]
    await started.wait()
    gate.set()
    assert await asyncio.gather(*callers) == ["result 1"] * 5
    assert runs == 1
    # Once landed, the key is free: a later call runs the work again.
    assert await store.single_flight("k", work) == "result 2"
    assert await store.single_flight("other", work) == "result 3"


async def test_single_flight_shares_the_error(store: MediaStore) -> None:
    started, gate = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        started.set()
        await gate.wait()
        raise ValueError("broken video")

    callers = [asyncio.ensure_future(store.single_flight("k", work)) for _ in range(3)]
    await started.wait()
    gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert [str(r) for r in results] == ["broken video"] * 3


async def test_a_caller_leaving_does_not_cancel_the_work(store: MediaStore) -> None:
    started, gate = asyncio.Event(), asyncio.Event()

    async def work() -> str:
        started.set()
        await gate.wait()
        return "done"

    leaving = asyncio.ensure_future(store.single_flight("k", work))
    staying = asyncio.ensure_future(store.single_flight("k", work))
    await started.wait()
    leaving.cancel()
    await asyncio.wait([leaving])  # gone for good before the work may finish
    gate.set()
    assert await staying == "done"
    assert leaving.cancelled()


# --- delete, eviction, pins ---------------------------------------------------------------------------


async def test_delete_removes_the_object(store: MediaStore) -> None:
    stored = put(store, oid(1), 10)
    assert await store.delete(stored.id) is True
    assert await store.get(stored.id) is None
    assert names(store.objects) == [] and names(store.tmp) == []
    assert await store.delete(stored.id) is False
    assert await store.delete("../objects") is False


async def test_evict_removes_least_recently_used_until_under_the_bound(store: MediaStore) -> None:
    for n in range(4):
        put(store, oid(n), 40 * KB, used_at=1_000_000 + n)
    await store.get(oid(0))  # the oldest becomes the newest
    evicted = await store.evict()
    assert evicted == [oid(1), oid(2)]
    assert names(store.objects) == sorted([oid(0), oid(3)])
    assert names(store.tmp) == []
    assert await store.evict() == []  # under the bound now


async def test_evict_skips_pinned_objects(store: MediaStore) -> None:
    for n in range(4):
        put(store, oid(n), 40 * KB, used_at=1_000_000 + n)
    async with store.pinned(oid(0)), store.pinned(oid(0)), store.pinned(oid(1)):
        assert await store.evict() == [oid(2), oid(3)]
    assert names(store.objects) == sorted([oid(0), oid(1)])


async def test_a_pin_lasts_until_its_last_holder_leaves(store: MediaStore) -> None:
    put(store, oid(0), 60 * KB, used_at=1_000_000)
    put(store, oid(1), 60 * KB, used_at=1_000_001)
    async with store.pinned(oid(0)):
        async with store.pinned(oid(0)):
            pass
        assert await store.evict() == [oid(1)]
    put(store, oid(2), 60 * KB)
    assert await store.evict() == [oid(0)]


async def test_evict_with_everything_pinned_keeps_everything(store: MediaStore) -> None:
    for n in range(3):
        put(store, oid(n), 60 * KB)
    async with store.pinned(oid(0)), store.pinned(oid(1)), store.pinned(oid(2)):
        assert await store.evict() == []
    assert len(names(store.objects)) == 3


async def test_background_eviction_is_owned_and_awaited_at_close(store: MediaStore) -> None:
    for n in range(4):
        put(store, oid(n), 40 * KB, used_at=1_000_000 + n)
    store.schedule_eviction()
    store.schedule_eviction()  # while one runs: it runs once more, not twice at once
    await store.aclose()  # returns only once the eviction is done: nothing touches the cache after it
    assert names(store.objects) == sorted([oid(2), oid(3)])
    put(store, oid(9), 90 * KB)
    store.schedule_eviction()  # closed: nothing starts
    assert oid(9) in names(store.objects)


async def test_a_temp_dir_is_removed_even_when_its_user_is_cancelled(store: MediaStore) -> None:
    inside = asyncio.Event()

    async def work() -> None:
        async with store.temp_dir() as path:
            (path / "big.part").write_bytes(b"\0" * 1000)
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.ensure_future(work())
    await inside.wait()
    assert len(names(store.tmp)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert names(store.tmp) == []


# --- a full disk ------------------------------------------------------------------------------------------


@pytest.fixture
def disk_of(store: MediaStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The media folder as a disk of ``[size]`` bytes (change it to resize): free space is what the objects leave."""
    size = [0]

    def free_bytes(path: Path) -> int:
        return size[0] - sum(f.stat().st_size for f in store.root.rglob("*") if f.is_file())

    monkeypatch.setattr(space, "free_bytes", free_bytes)
    return size


async def test_make_room_evicts_least_recently_used_until_the_disk_has_room(store: MediaStore,
                                                                             disk_of: list[int]) -> None:
    disk_of[0] = 200 * KB
    for n in range(4):
        put(store, oid(n), 40 * KB, used_at=1_000_000 + n)
    await store.get(oid(0))  # the oldest becomes the newest
    async with store.pinned(oid(1)):
        assert await store.make_room(100 * KB)
    assert names(store.objects) == sorted([oid(0), oid(1)])  # oid(2), oid(3) went; pinned oid(1) stayed
    assert names(store.tmp) == []
    assert await store.make_room(100 * KB) is False  # room enough already: nothing evicted


async def test_make_room_with_nothing_to_evict_says_so(store: MediaStore, disk_of: list[int]) -> None:
    disk_of[0] = 50 * KB
    put(store, oid(0), 40 * KB)
    async with store.pinned(oid(0)):
        assert await store.make_room(100 * KB) is False
    assert names(store.objects) == [oid(0)]


async def test_with_room_runs_work_once_more_after_evicting(store: MediaStore, disk_of: list[int]) -> None:
    disk_of[0] = 100 * KB
    put(store, oid(0), 80 * KB)
    runs: list[int] = []

    async def work() -> str:
        runs.append(space.free_bytes(store.root))
        if len(runs) == 1:
            raise InsufficientStorage("full")
        return "done"

    assert await store.with_room(work, needed=50 * KB) == "done"
    assert len(runs) == 2 and runs[1] >= 50 * KB
    assert names(store.objects) == []


async def test_with_room_gives_up_after_one_retry_or_when_nothing_can_go(store: MediaStore,
                                                                         disk_of: list[int]) -> None:
    disk_of[0] = 100 * KB
    put(store, oid(0), 80 * KB)
    runs: list[int] = []

    async def full() -> None:
        runs.append(1)
        raise InsufficientStorage("full")

    with pytest.raises(InsufficientStorage):
        await store.with_room(full, needed=50 * KB)
    assert len(runs) == 2  # the first, and one after the eviction
    with pytest.raises(InsufficientStorage):
        await store.with_room(full, needed=50 * KB)
    assert len(runs) == 3  # nothing left to evict: no second run


def test_write_json_atomic_on_a_full_disk_is_insufficient_storage(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.json"
    target.write_text('{"old": true}')

    def full(_: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(InsufficientStorage):
        write_json_atomic(target, {"new": True}, tmp_path)
    assert json.loads(target.read_text()) == {"old": True}
    assert names(tmp_path) == ["a.json"]
