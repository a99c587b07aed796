"""The OpenAI Files API for videos over real HTTP: upload, list, get, content, delete; nothing is left after delete."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import GatewayFactory, LiveGateway
from tests.support.media_api import error_of, media_entries, probe_file, tagged_clip


@pytest.fixture(scope="module")
def clip() -> bytes:
    return tagged_clip()


@pytest.fixture
def gw(gateway_factory: GatewayFactory) -> LiveGateway:
    return gateway_factory()


def upload(gw: LiveGateway, content: bytes, name: str = "holiday.mp4", purpose: str = "vision") -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/files", files={"file": (name, content, "video/mp4")}, data={"purpose": purpose},
                      timeout=60)


def test_upload_list_get_content_delete(gw: LiveGateway, clip: bytes, tmp_path: Path) -> None:
    response = upload(gw, clip)
    assert response.status_code == 200, response.text
    record = response.json()
    file_id = record["id"]
    assert file_id.startswith("file-") and len(file_id) == 29
    assert record["object"] == "file" and record["status"] == "processed"
    assert (record["filename"], record["bytes"], record["purpose"]) == ("holiday.mp4", len(clip), "vision")
    assert isinstance(record["created_at"], int)

    listed = httpx.get(f"{gw.url}/v1/files").json()
    assert listed["object"] == "list" and listed["data"] == [record]
    assert httpx.get(f"{gw.url}/v1/files/{file_id}").json() == record

    content = httpx.get(f"{gw.url}/v1/files/{file_id}/content")
    assert content.status_code == 200 and content.headers["content-type"] == "video/mp4"
    (tmp_path / "got.mp4").write_bytes(content.content)
    streams = probe_file(tmp_path / "got.mp4")["streams"]
    assert isinstance(streams, list) and [s["codec_name"] for s in streams] == ["h264", "aac"]
    assert b"secret-title" not in content.content  # the sanitized copy, not the upload

    object_id = hashlib.sha256(clip).hexdigest()
    media = gw.settings.media_dir
    assert media_entries(media)["objects"] == [object_id]
    deleted = httpx.delete(f"{gw.url}/v1/files/{file_id}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": file_id, "object": "file", "deleted": True}

    # Gone everywhere: the record, its content, the cached object on disk, and as a source for /v1/videos.
    assert media_entries(media) == {"tmp": [], "objects": [], "urls": [], "files": []}
    for url in (f"{gw.url}/v1/files/{file_id}", f"{gw.url}/v1/files/{file_id}/content"):
        assert file_id in error_of(httpx.get(url), 404, "file_not_found")
    as_source = httpx.post(f"{gw.url}/v1/videos", json={"file_id": file_id})
    assert file_id in error_of(as_source, 404, "file_not_found")
    assert as_source.json()["error"]["param"] == "file_id"
    assert error_of(httpx.delete(f"{gw.url}/v1/files/{file_id}"), 404, "file_not_found")
    assert httpx.get(f"{gw.url}/v1/files").json()["data"] == []


def test_same_bytes_uploaded_twice_share_one_object(gw: LiveGateway, clip: bytes) -> None:
    first, second = upload(gw, clip, "a.mp4").json(), upload(gw, clip, "b.mp4").json()
    assert first["id"] != second["id"]
    media = gw.settings.media_dir
    assert media_entries(media)["objects"] == [hashlib.sha256(clip).hexdigest()]
    listed = [r["id"] for r in httpx.get(f"{gw.url}/v1/files").json()["data"]]
    assert sorted(listed) == sorted([first["id"], second["id"]])
    # Deleting one keeps the video the other still refers to.
    assert httpx.delete(f"{gw.url}/v1/files/{first['id']}").status_code == 200
    assert len(media_entries(media)["objects"]) == 1
    assert httpx.get(f"{gw.url}/v1/files/{second['id']}/content").status_code == 200
    assert httpx.delete(f"{gw.url}/v1/files/{second['id']}").status_code == 200
    assert media_entries(media)["objects"] == []


def test_unknown_and_malformed_file_ids(gw: LiveGateway) -> None:
    for file_id in ("file-" + "a" * 24, "file-abc", "../../etc/passwd", "file-" + "a" * 24 + ".json"):
        for method, suffix in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
            response = httpx.request(method, f"{gw.url}/v1/files/{file_id}{suffix}")
            if response.status_code == 404 and response.json()["error"]["code"] == "not_found":
                assert "/" in file_id  # only a path with slashes misses the route
                continue
            error_of(response, 404, "file_not_found")


def test_filename_is_reduced_to_a_safe_base_name(gw: LiveGateway, clip: bytes) -> None:
    record = upload(gw, clip, name="..\\..\\C:/Users/me/My Video.mp4").json()
    assert record["filename"] == "My Video.mp4"
    assert error_of(upload(gw, clip, purpose="nonsense"), 400, "invalid_value")
    assert len(httpx.get(f"{gw.url}/v1/files").json()["data"]) == 1


def test_openai_sdk_round_trip(gw: LiveGateway, clip: bytes, tmp_path: Path) -> None:
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused")
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    with path.open("rb") as handle:
        created = client.files.create(file=handle, purpose="user_data")
    assert created.filename == "clip.mp4" and created.bytes == len(clip)
    assert client.files.retrieve(created.id).id == created.id
    assert [f.id for f in client.files.list()] == [created.id]
    assert client.files.content(created.id).content[4:8] == b"ftyp"
    assert client.files.delete(created.id).deleted is True
    with pytest.raises(openai.NotFoundError) as caught:
        client.files.retrieve(created.id)
    assert caught.value.code == "file_not_found"
