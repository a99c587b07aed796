"""Bad chat requests are refused with the field they are about and words that say what is wrong (real app, real
HTTP: httpx for bodies the openai SDK would not build, the SDK where it can send them)."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.conftest import GatewayFactory, free_port
from tests.support.origin import Origin
from tests.unit.test_errors_and_auth import assert_envelope

VIDEO = {"type": "video_url", "video_url": {"url": "https://videos.example.com/clip.mp4"}}


def post(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "videochat-r1.5", "messages": list(messages), **fields}


def test_an_empty_video_url_names_the_url(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    part = {"type": "video_url", "video_url": {"url": ""}}
    error = assert_envelope(post(gw.url, chat({"role": "user", "content": [part]})), 422, "invalid_value")
    assert error["param"] == "messages.0.content.0.video_url.url"
    assert error["message"] == ("Invalid request at 'messages.0.content.0.video_url.url': String should have at least "
                                "1 character.")


def test_an_unknown_part_type_names_the_type_and_the_known_ones(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    message = {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "audio_url", "audio_url": {}}]}
    error = assert_envelope(post(gw.url, chat(message)), 422, "invalid_value")
    assert error["param"] == "messages.0.content.1.type"
    assert error["message"] == ("Invalid request at 'messages.0.content.1.type': Unknown content part type; a part's "
                                "'type' is one of 'text', 'image_url', 'video_url', 'file' (got 'audio_url').")


def test_a_missing_text_names_the_text_field(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    error = assert_envelope(post(gw.url, chat({"role": "user", "content": [{"type": "text"}]})), 422, "invalid_value")
    assert error["param"] == "messages.0.content.0.text"
    assert error["message"] == "Invalid request at 'messages.0.content.0.text': Field required."


def test_content_of_the_wrong_type_says_what_it_may_be(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    error = assert_envelope(post(gw.url, chat({"role": "user", "content": 5})), 422, "invalid_value")
    assert error["param"] == "messages.0.content"
    assert error["message"] == ("Invalid request at 'messages.0.content': A message's content is a string or a list "
                                "of content parts.")


@pytest.mark.parametrize("role", ["user", "system", "developer", "tool"])
def test_null_or_missing_content_is_refused_for_every_role_but_assistant(gateway_factory: GatewayFactory,
                                                                        role: str) -> None:
    gw = gateway_factory()
    for message in ({"role": role, "content": None}, {"role": role}):
        body = chat({"role": "user", "content": "hi"}, message, {"role": "user", "content": "and?"})
        error = assert_envelope(post(gw.url, body), 422, "invalid_value")
        assert error["param"] == "messages.1.content"
        assert error["message"] == (f"Invalid request at 'messages.1.content': A {role} message needs content "
                                    "(a string or parts).")


def test_an_assistant_turn_without_content_is_accepted(gateway_factory: GatewayFactory) -> None:
    # vLLM is configured but down: a body that passed validation gets the 503 of a missing backend.
    gw = gateway_factory(vllm_url=f"http://127.0.0.1:{free_port()}")
    body = chat({"role": "user", "content": "hi"}, {"role": "assistant", "content": None},
                {"role": "user", "content": "and?"})
    assert_envelope(post(gw.url, body), 503)


def test_a_body_without_content_type_says_to_send_json(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    for headers, got in (({}, "no Content-Type"),
                         ({"content-type": "application/x-www-form-urlencoded"},
                          "Content-Type 'application/x-www-form-urlencoded'"),
                         ({"content-type": "text/plain"}, "Content-Type 'text/plain'")):
        response = httpx.post(f"{gw.url}/v1/chat/completions", headers=headers,
                              content=b'{"model": "videochat-r1.5", "messages": [{"role": "user", "content": "hi"}]}')
        error = assert_envelope(response, 422, "invalid_content_type")
        assert error["param"] is None
        assert error["message"] == ("The request body must be a JSON object sent with 'Content-Type: application/json' "
                                    f"(got {got}).")


@pytest.mark.parametrize("value", ["yes", "true", 1])
def test_stream_must_be_a_real_boolean(gateway_factory: GatewayFactory, value: object) -> None:
    gw = gateway_factory()
    error = assert_envelope(post(gw.url, chat({"role": "user", "content": "hi"}, stream=value)), 422, "invalid_value")
    assert error["param"] == "stream"
    assert error["message"] == "Invalid request at 'stream': Input should be a valid boolean."


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(("field", "fields"), [
    ("tools", {"tools": TOOLS, "tool_choice": "required"}),
    ("tools", {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "f"}}}),
    ("tool_choice", {"tool_choice": "required"}),
    ("logprobs", {"logprobs": True}),
    ("response_format", {"response_format": {"type": "json_object"}}),
])
def test_plain_chat_only_fields_are_refused_on_a_video_question(gateway_factory: GatewayFactory, field: str,
                                                                fields: dict[str, object]) -> None:
    gw = gateway_factory()
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="videochat-r1.5", messages=[{  # type: ignore[call-overload]
            "role": "user", "content": [VIDEO, {"type": "text", "text": "What moves?"}]}], **fields)
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["param"] == field and error["code"] == "unsupported_parameter"
    assert error["message"] == f"'{field}' is not supported on questions about a video (only on plain chat)."


@pytest.mark.parametrize("tool_choice", [None, "auto", "none"])
def test_tools_the_model_may_leave_uncalled_do_not_stop_a_video_question(gateway_factory: GatewayFactory,
                                                                         tool_choice: str | None) -> None:
    """Open WebUI 0.12 offers its built-in tools with every message; a video answer simply calls none. Here the
    question gets past the check to the next one: this gateway has no model."""
    gw = gateway_factory()
    fields = {"tools": TOOLS} if tool_choice is None else {"tools": TOOLS, "tool_choice": tool_choice}
    response = post(gw.url, chat({"role": "user", "content": [VIDEO, {"type": "text", "text": "What moves?"}]},
                                 **fields))
    error = assert_envelope(response, 404, "model_not_found")
    assert error["param"] == "model"


def test_an_html_page_that_is_not_a_video_is_415(gateway_factory: GatewayFactory, origin: Origin) -> None:
    gw = gateway_factory()
    url = origin.page("/about", "<!DOCTYPE html><html><head><title>About</title></head><body>Hi</body></html>")
    response = httpx.post(f"{gw.url}/v1/videos", json={"url": url}, timeout=60)
    error = assert_envelope(response, 415, "not_a_video")
    assert (error["message"], error["param"]) == ("no video was found at this URL", "url")


HI = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(("fields", "param", "message"), [
    ({"seed": 2**63}, "seed", "Input should be less than or equal to 9223372036854775807"),
    ({"seed": -(2**63) - 1}, "seed", "Input should be greater than or equal to -9223372036854775808"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "At most 4 items are allowed, got 5"),
    ({"stop": "x" * 257}, "stop", "String should have at most 256 characters"),
    ({"stop": ["a", "x" * 257]}, "stop.1", "String should have at most 256 characters"),
    ({"stop": 5}, "stop", "'stop' is a string or a list of at most 4 strings"),
    ({"logit_bias": {str(token): 1 for token in range(301)}}, "logit_bias", "At most 300 entries are allowed, got 301"),
    ({"messages": [HI] * 2049}, "messages", "At most 2048 items are allowed, got 2049"),
], ids=["seed-high", "seed-low", "five-stops", "long-stop", "long-stop-in-list", "stop-number", "logit-bias-301",
        "messages-2049"])
def test_limits_are_checked_by_the_gateway(gateway_factory: GatewayFactory, fields: dict[str, Any], param: str,
                                           message: str) -> None:
    gw = gateway_factory()
    error = assert_envelope(post(gw.url, {**chat(HI), **fields}), 422, "invalid_value")
    assert error == {"message": f"Invalid request at '{param}': {message}.", "type": "invalid_request_error",
                     "param": param, "code": "invalid_value"}


def test_values_at_the_limits_pass_validation(gateway_factory: GatewayFactory) -> None:
    # No model is configured: a body that passed validation gets the 404 of a missing model.
    gw = gateway_factory()
    for fields in ({"seed": 2**63 - 1}, {"seed": -(2**63)}, {"stop": ["a", "b", "c", "x" * 256]},
                   {"logit_bias": {str(token): -100 for token in range(300)}}, {"messages": [HI] * 2048}):
        assert_envelope(post(gw.url, {**chat(HI), **fields}), 404, "model_not_found")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(("field", "param"), [("temperature", "temperature"), ("logit_bias", "logit_bias.42")])
def test_a_number_that_is_not_finite_says_so(gateway_factory: GatewayFactory, literal: str, field: str,
                                             param: str) -> None:
    gw = gateway_factory()
    value = literal if field == "temperature" else f'{{"42": {literal}}}'
    body = f'{{"model": "videochat-r1.5", "messages": [{{"role": "user", "content": "hi"}}], "{field}": {value}}}'
    response = httpx.post(f"{gw.url}/v1/chat/completions", content=body.encode(),
                          headers={"content-type": "application/json"})
    error = assert_envelope(response, 422, "invalid_value")
    assert error["param"] == param
    assert error["message"] == f"Invalid request at '{param}': Input should be a finite number."


def test_a_huge_or_unprintable_model_name_is_quoted_short_and_escaped(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    error = assert_envelope(post(gw.url, {**chat(HI), "model": "m" * 2**20}), 404, "model_not_found")
    assert error["message"] == f"The model '{'m' * 62}'… (1048576 characters) does not exist: no local model is " \
                               "configured."
    error = assert_envelope(post(gw.url, {**chat(HI), "model": "evil\x1b[2J\r\nX-Injected: 1"}), 404, "model_not_found")
    assert error["message"] == ("The model 'evil\\x1b[2J\\r\\nX-Injected: 1' does not exist: "
                                "no local model is configured.")


def test_a_huge_logit_bias_key_or_part_type_is_quoted_short(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    response = post(gw.url, {**chat(HI), "logit_bias": {"k" * 2**20: 1, **{str(n): 1 for n in range(200)}}})
    error = assert_envelope(response, 422, "invalid_value")
    assert len(response.content) < 1000
    assert error["param"] == f"logit_bias.'{'k' * 62}'… (1048576 characters).[key]"
    part = {"type": "\x00" * 2**20}
    response = post(gw.url, chat({"role": "user", "content": [part]}))
    error = assert_envelope(response, 422, "invalid_value")
    assert len(response.content) < 1000
    shown = "'" + "\\x00" * 15 + "'… (1048576 characters)"
    assert str(error["message"]).endswith(f"(got {shown}).")


def test_a_zoom_other_than_official_or_dense_is_refused(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    error = assert_envelope(post(gw.url, chat({"role": "user", "content": [VIDEO]}, vchat={"zoom": "closer"})), 422,
                            "invalid_value")
    assert error["param"] == "vchat.zoom" and "'official' or 'dense'" in error["message"]
