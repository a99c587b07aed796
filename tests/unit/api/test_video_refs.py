"""video_refs.find_video: the video a conversation is about, in every shape chat clients send it."""

from __future__ import annotations

import pytest

from gateway.api.schemas import ChatMessage
from gateway.api.video_refs import VideoRef, find_video, links_in
from gateway.errors import InvalidRequest

MP4 = "https://cdn.example.com/clips/holiday.mp4"


def msg(role: str, content: object) -> ChatMessage:
    return ChatMessage.model_validate({"role": role, "content": content})


def user(content: object) -> ChatMessage:
    return msg("user", content)


# --- links in text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    (f"what happens in {MP4}?", MP4),
    (f"see ({MP4}).", MP4),
    (f"<{MP4}>, thanks", MP4),
    (f'"{MP4}"', MP4),
    (f"[clip]({MP4})", MP4),
    ("https://www.youtube.com/watch?v=dQw4w9WgXcQ, what is this?", "https://www.youtube.com/watch?v=dQw4w9WgXcQ"),
    ("https://youtu.be/dQw4w9WgXcQ!", "https://youtu.be/dQw4w9WgXcQ"),
    ("HTTPS://CDN.EXAMPLE.COM/A.MOV", "HTTPS://CDN.EXAMPLE.COM/A.MOV"),
    (f"{MP4}?sig=abc&exp=1 please", f"{MP4}?sig=abc&exp=1"),
])
def test_link_inside_the_users_text(text: str, expected: str) -> None:
    ref = find_video([user(text)])
    assert ref == VideoRef("url", expected, "messages.0.content", from_text=True)


@pytest.mark.parametrize("text", [
    "no link at all",
    "read https://example.com/article about videos",
    "ftp://example.com/clip.mp4",
    "file:///etc/passwd.mp4",
    "https://example.com/clip.mp4.html",
])
def test_text_without_a_video_link(text: str) -> None:
    assert find_video([user(text)]) is None


def test_the_last_link_in_a_message_wins() -> None:
    other = "https://cdn.example.com/other.webm"
    assert links_in(f"compare {MP4} with {other}") == [MP4, other]
    ref = find_video([user(f"compare {MP4} with {other}")])
    assert ref is not None and ref.value == other


def test_links_in_text_parts_of_a_list_content() -> None:
    ref = find_video([user([{"type": "text", "text": "first line"}, {"type": "text", "text": f"video: {MP4}"}])])
    assert ref == VideoRef("url", MP4, "messages.0.content", from_text=True)


def test_links_from_the_assistant_or_system_text_are_not_the_video() -> None:
    assert find_video([msg("system", f"You may be asked about {MP4}")]) is None
    assert find_video([user("hi"), msg("assistant", f"Try {MP4}")]) is None


# --- media parts --------------------------------------------------------------------------------------


def test_dify_style_image_url_carrying_a_video() -> None:
    ref = find_video([user([{"type": "text", "text": "what is this?"},
                            {"type": "image_url", "image_url": {"url": MP4}}])])
    assert ref == VideoRef("url", MP4, "messages.0.content.1")
    data = find_video([user([{"type": "image_url", "image_url": {"url": "  data:video/mp4;base64,AAAA "}}])])
    assert data == VideoRef("data", "data:video/mp4;base64,AAAA", "messages.0.content.0")


def test_librechat_style_video_url_data_uri() -> None:
    ref = find_video([user([{"type": "video_url", "video_url": {"url": "DATA:video/webm;base64,AAAA"}},
                            {"type": "text", "text": "summarize"}])])
    assert ref == VideoRef("data", "DATA:video/webm;base64,AAAA", "messages.0.content.0")


def test_file_parts() -> None:
    by_id = find_video([user([{"type": "file", "file": {"file_id": "file-abc"}}])])
    assert by_id == VideoRef("file", "file-abc", "messages.0.content.0.file.file_id")
    inline = find_video([user([{"type": "file", "file": {"file_data": "data:video/mp4;base64,AAAA"}}])])
    assert inline == VideoRef("data", "data:video/mp4;base64,AAAA", "messages.0.content.0.file.file_data")
    bare = find_video([user([{"type": "file", "file": {"file_data": "AAAA", "filename": "a.mp4"}}])])
    assert bare == VideoRef("data", "data:application/octet-stream;base64,AAAA",
                            "messages.0.content.0.file.file_data")


def test_file_part_without_id_or_data_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        find_video([user([{"type": "file", "file": {"filename": "a.mp4"}}])])
    assert caught.value.param == "messages.0.content.0.file"


def test_a_media_part_beats_a_link_in_the_same_message() -> None:
    ref = find_video([user([{"type": "text", "text": f"not {MP4}"},
                            {"type": "video_url", "video_url": {"url": "https://cdn.example.com/b.mp4"}}])])
    assert ref is not None and ref.value == "https://cdn.example.com/b.mp4" and not ref.from_text


def test_two_videos_in_one_message_are_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        find_video([user([{"type": "video_url", "video_url": {"url": MP4}},
                          {"type": "image_url", "image_url": {"url": MP4}}])])
    assert (caught.value.code, caught.value.param) == ("too_many_videos", "messages.0.content")


def test_video_in_a_system_message_counts() -> None:
    ref = find_video([msg("system", [{"type": "video_url", "video_url": {"url": MP4}}]), user("what is it?")])
    assert ref == VideoRef("url", MP4, "messages.0.content.0")


# --- conversations ------------------------------------------------------------------------------------


def test_follow_up_turns_reuse_the_last_video() -> None:
    first = "https://cdn.example.com/first.mp4"
    conversation = [
        user([{"type": "video_url", "video_url": {"url": first}}, {"type": "text", "text": "who is there?"}]),
        msg("assistant", "Two people."),
        user("and at the end?"),
        msg("assistant", f"They leave. (Also see {MP4}.)"),
        user("why?"),
    ]
    assert find_video(conversation) == VideoRef("url", first, "messages.0.content.0")


def test_a_newer_video_replaces_the_older_one() -> None:
    conversation = [
        user([{"type": "video_url", "video_url": {"url": "https://cdn.example.com/first.mp4"}}]),
        msg("assistant", "A cat."),
        user(f"now this one: {MP4}"),
        msg("assistant", "A dog."),
        user("which is bigger?"),
    ]
    assert find_video(conversation) == VideoRef("url", MP4, "messages.2.content", from_text=True)


def test_no_video_anywhere() -> None:
    assert find_video([msg("system", "be brief"), user("hello"), msg("assistant", "hi"), user("bye")]) is None
    assert find_video([msg("assistant", None), user("bye")]) is None
