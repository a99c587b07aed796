"""A video track's frame times and keyframes read from an MP4's own sample tables (no packet walk).

The sanitized copy is ffmpeg's plain MP4 with its index (moov) at the front, so every frame's pts and sync flag is
already written down there: stts (decode durations), ctts (composition offsets), stss (sync samples) and the edit
list. Reading those takes milliseconds where ffprobe walks every packet (an hour at 30 fps: 108,000 of them, over
a second). The tables are read as ffmpeg 5.1's mov demuxer applies them, for the shapes ffmpeg's muxer writes: at
most a leading empty edit and one plain edit, composition offsets that are never negative, no fragments, no
sample-group or partial-sync keyframes. Anything else (or anything malformed) gives None, and the caller asks
ffprobe; the tables are parsed defensively, every count checked against the bytes its box holds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

# Boxes larger than this are not read into memory (an ffmpeg moov of 4 h at 60 fps is ~15 MB).
MAX_MOOV_BYTES = 64 << 20
# Top-level boxes walked before moov is found (ftyp, free, mdat… in a plain file: a handful).
MAX_TOP_BOXES = 64
# Samples read from the tables at most (4 h at 240 fps is 3.5 M); a track with more is left to ffprobe. A run of
# stts or ctts may claim billions of samples in 8 bytes, so counts are checked before any list is built.
MAX_SAMPLES = 1 << 22
_CONTAINERS = {b"trak", b"mdia", b"minf", b"stbl", b"edts"}


class Unsupported(Exception):
    """The file is not of the shape read here (the caller falls back to a packet walk)."""


@dataclass(frozen=True, slots=True)
class TrackFrames:
    """A track's frames as ffmpeg's demuxer lists them, in decode order: (pts, keyframe); and its timescale."""

    frames: list[tuple[int, bool]]
    timescale: int


def read_track_frames(path: Path, track: int) -> TrackFrames | None:
    """The frames of the track'th trak of path's moov if it is a video track of a supported shape, else None."""
    try:
        moov = _read_moov(path)
        traks = [body for kind, body in _boxes(moov) if kind == b"trak"]
        if any(kind == b"mvex" for kind, _ in _boxes(moov)) or not 0 <= track < len(traks):
            raise Unsupported("fragmented, or no such track")
        movie_scale = _movie_timescale(moov)
        return _track_frames(traks[track], movie_scale)
    except (Unsupported, struct.error, ValueError, OSError):
        return None


def _read_moov(path: Path) -> bytes:
    with path.open("rb") as file:
        size = path.stat().st_size
        at = 0
        for _ in range(MAX_TOP_BOXES):
            if at + 8 > size:
                break
            file.seek(at)
            header = file.read(16)
            length, kind = struct.unpack(">I4s", header[:8])
            start = 8
            if length == 1:
                length, start = struct.unpack(">Q", header[8:16])[0], 16
            elif length == 0:
                length = size - at
            if length < start or at + length > size:
                raise Unsupported("a box runs past the end of the file")
            if kind == b"moov":
                if length - start > MAX_MOOV_BYTES:
                    raise Unsupported("moov too large")
                file.seek(at + start)
                body = file.read(length - start)
                if len(body) != length - start:
                    raise Unsupported("short read")
                return body
            at += length
    raise Unsupported("no moov")


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """The boxes directly inside data, as (type, body); raises Unsupported on a malformed size."""
    out = []
    at = 0
    while at + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        start = 8
        if length == 1:
            if at + 16 > len(data):
                raise Unsupported("truncated box header")
            length, start = struct.unpack_from(">Q", data, at + 8)[0], 16
        elif length == 0:
            length = len(data) - at
        if length < start or at + length > len(data):
            raise Unsupported("a box runs past its parent")
        out.append((kind, data[at + start:at + length]))
        at += length
    if at != len(data):
        raise Unsupported("trailing bytes in a box")
    return out


def _child(data: bytes, path: list[bytes]) -> bytes | None:
    """The first box at this path of types below data (a None where any is missing)."""
    for kind in path:
        found = [body for name, body in _boxes(data) if name == kind]
        if not found:
            return None
        data = found[0]
    return data


def _full_box(body: bytes | None) -> tuple[int, bytes]:
    if body is None or len(body) < 4:
        raise Unsupported("missing or short full box")
    return body[0], body[4:]


def _movie_timescale(moov: bytes) -> int:
    version, body = _full_box(_child(moov, [b"mvhd"]))
    scale = struct.unpack_from(">I", body, 16 if version == 1 else 8)[0]
    if scale <= 0:
        raise Unsupported("no movie timescale")
    return int(scale)


def _track_frames(trak: bytes, movie_scale: int) -> TrackFrames:
    handler = _full_box(_child(trak, [b"mdia", b"hdlr"]))[1]
    if handler[4:8] != b"vide":
        raise Unsupported("not a video track")
    version, mdhd = _full_box(_child(trak, [b"mdia", b"mdhd"]))
    scale = int(struct.unpack_from(">I", mdhd, 16 if version == 1 else 8)[0])
    if scale <= 0:
        raise Unsupported("no media timescale")
    stbl = _child(trak, [b"mdia", b"minf", b"stbl"])
    if stbl is None:
        raise Unsupported("no sample table")
    kinds = {kind for kind, _ in _boxes(stbl)}
    # Keyframes from sample groups or partial sync samples are ffmpeg's own rules: not followed here.
    if kinds & {b"sgpd", b"sbgp", b"stps", b"stz2"}:
        raise Unsupported("sample groups, partial sync or compact sizes")
    count = _sample_count(_child(stbl, [b"stsz"]))
    dts = _decode_times(_child(stbl, [b"stts"]), count)
    offsets = _composition_offsets(_child(stbl, [b"ctts"]), count)
    sync = _sync_samples(_child(stbl, [b"stss"]), count)
    cts = [d + o for d, o in zip(dts, offsets, strict=True)]
    empty, first, length = _edit(_child(trak, [b"edts", b"elst"]), movie_scale, scale)
    if first is None:
        frames = [(t, n in sync if sync is not None else True) for n, t in enumerate(cts)]
        return TrackFrames(frames, scale)
    end = first + length
    inside = [t for t in cts if first <= t < end]
    if not inside:
        raise Unsupported("no frame inside the edit")
    shift = min(inside) - empty
    frames = [(t - shift, n in sync if sync is not None else True) for n, t in enumerate(cts) if first <= t < end]
    return TrackFrames(frames, scale)


def _sample_count(body: bytes | None) -> int:
    _, data = _full_box(body)
    size, count = struct.unpack_from(">II", data, 0)
    if size == 0 and len(data) < 8 + 4 * count:
        raise Unsupported("stsz shorter than its count")
    if not 0 < count <= MAX_SAMPLES:
        raise Unsupported("no samples, or more than are read here")
    return int(count)


def _runs(data: bytes, what: str, signed: bool = False) -> list[tuple[int, int]]:
    entries = struct.unpack_from(">I", data, 0)[0]
    if len(data) < 4 + 8 * entries:
        raise Unsupported(f"{what} shorter than its count")
    pairs = struct.iter_unpack(">Ii" if signed else ">II", data[4:4 + 8 * entries])
    return [(int(n), int(v)) for n, v in pairs]


def _decode_times(body: bytes | None, count: int) -> list[int]:
    _, data = _full_box(body)
    times: list[int] = []
    now = 0
    for n, delta in _runs(data, "stts"):
        if len(times) + n > count:
            raise Unsupported("stts lists more samples than stsz")
        times.extend(range(now, now + n * delta, delta) if delta else [now] * n)
        now += n * delta
    if len(times) != count:
        raise Unsupported("stts and stsz disagree")
    return times


def _composition_offsets(body: bytes | None, count: int) -> list[int]:
    if body is None:
        return [0] * count
    version, data = _full_box(body)
    offsets: list[int] = []
    for n, offset in _runs(data, "ctts", signed=version == 1):
        if offset < 0:
            raise Unsupported("negative composition offsets")
        if len(offsets) + n > count:
            raise Unsupported("ctts lists more samples than stsz")
        offsets.extend([offset] * n)
    if len(offsets) != count:
        raise Unsupported("ctts and stsz disagree")
    return offsets


def _sync_samples(body: bytes | None, count: int) -> set[int] | None:
    """The sync samples as 0-based numbers; None when there is no stss (every sample is one)."""
    if body is None:
        return None
    _, data = _full_box(body)
    entries = struct.unpack_from(">I", data, 0)[0]
    if len(data) < 4 + 4 * entries:
        raise Unsupported("stss shorter than its count")
    numbers = {int(n) - 1 for (n,) in struct.iter_unpack(">I", data[4:4 + 4 * entries])}
    if any(not 0 <= n < count for n in numbers):
        raise Unsupported("stss names a sample that does not exist")
    return numbers


def _edit(body: bytes | None, movie_scale: int, scale: int) -> tuple[int, int | None, int]:
    """(empty duration before the media, media time the edit starts at, its duration), in the media's timescale;
    (0, None, 0) without an edit list. Only a leading empty edit and one plain edit at rate 1 are accepted."""
    if body is None:
        return 0, None, 0
    version, data = _full_box(body)
    entries = struct.unpack_from(">I", data, 0)[0]
    width = 20 if version == 1 else 12
    if len(data) < 4 + width * entries:
        raise Unsupported("elst shorter than its count")
    edits = []
    for n in range(entries):
        at = 4 + n * width
        if version == 1:
            duration, media_time, rate = struct.unpack_from(">Qqi", data, at)
        else:
            duration, media_time, rate = struct.unpack_from(">Iii", data, at)
        edits.append((int(duration), int(media_time), int(rate)))
    empty = 0
    if edits and edits[0][1] == -1:
        empty = _rescale(edits[0][0], scale, movie_scale)
        edits = edits[1:]
    if len(edits) != 1 or edits[0][1] < 0 or edits[0][2] != 0x10000:
        raise Unsupported("an edit list other than one plain edit")
    duration, media_time, _ = edits[0]
    return empty, media_time, _rescale(duration, scale, movie_scale)


def _rescale(value: int, scale: int, movie_scale: int) -> int:
    """value * scale / movie_scale rounded to nearest, halves away from zero (ffmpeg's av_rescale)."""
    return (2 * value * scale + movie_scale) // (2 * movie_scale)
