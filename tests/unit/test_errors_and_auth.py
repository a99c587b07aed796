"""Every error the gateway returns is an OpenAI envelope with the right status and the request id."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gateway.errors import EXCERPT_CHARS, excerpt
from tests.conftest import GatewayFactory


def assert_envelope(response: httpx.Response, status: int, code: str | None = None) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    assert response.headers["x-request-id"]
    return error


def test_unknown_route_is_404_envelope(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    response = httpx.get(f"{gw.url}/v1/nope", headers={"x-request-id": "abc-123"})
    error = assert_envelope(response, 404, "not_found")
    assert error["type"] == "invalid_request_error"
    assert response.headers["x-request-id"] == "abc-123"


def test_wrong_method_is_405_envelope(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    response = httpx.delete(f"{gw.url}/v1/models")
    assert_envelope(response, 405, "method_not_allowed")


def test_malformed_json_is_422_envelope(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    response = httpx.post(f"{gw.url}/v1/chat/completions", content=b'{"model": "x", "messages": [',
                          headers={"content-type": "application/json", "x-request-id": "bad-json-1"})
    error = assert_envelope(response, 422, "invalid_json")
    assert "not valid JSON" in str(error["message"])
    assert response.headers["x-request-id"] == "bad-json-1"


@pytest.mark.parametrize(("body", "message"), [
    (b"[" * 100_000 + b"]" * 100_000, "The request body is not valid JSON: it is nested too deeply."),
    (b'{"model": "m", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "The request body is not valid JSON: it is nested too deeply."),
    (b'{"model": "\xff\xfe", "messages": []}',
     "The request body is not valid JSON: it is not UTF-8 text (byte 11 is 0xff)."),
    (b'{"model": "x", "messages": [', "The request body is not valid JSON: Expecting value (at character 28)."),
    (b"", "The request body is empty; send a JSON object."),
    (b"[1, 2]", "The request body must be a JSON object, not an array."),
    (b'"hi"', "The request body must be a JSON object, not a string."),
    (b"3.5", "The request body must be a JSON object, not a number."),
    (b"null", "The request body must be a JSON object, not null."),
    (b"true", "The request body must be a JSON object, not true."),
], ids=["nested", "nested-inside", "not-utf8", "cut-short", "empty", "array", "string", "number", "null", "true"])
def test_every_broken_body_is_one_422_invalid_json(gateway_factory: GatewayFactory, body: bytes, message: str) -> None:
    gw = gateway_factory()
    for route in ("/v1/chat/completions", "/v1/videos"):
        response = httpx.post(f"{gw.url}{route}", content=body, headers={"content-type": "application/json"})
        error = assert_envelope(response, 422, "invalid_json")
        assert error == {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_json"}


def test_schema_violation_names_the_field(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    response = httpx.post(f"{gw.url}/v1/chat/completions",
                          json={"model": "videochat-r1.5", "messages": [], "temperature": 9})
    error = assert_envelope(response, 422, "invalid_value")
    assert error["param"] in ("messages", "temperature")


def test_no_backend_is_503_with_retry_after(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    response = httpx.get(f"{gw.url}/v1/models")
    assert_envelope(response, 503, "no_backend")


def test_unreachable_vllm_is_503_not_500(gateway_factory: GatewayFactory) -> None:
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    gw = gateway_factory(vllm_url=url)
    response = httpx.get(f"{gw.url}/v1/models")
    error = assert_envelope(response, 503, "backend_unavailable")
    assert error["message"] == (f"The local model server could not be reached: vLLM at {url} (VCHAT_VLLM_URL) refused "
                                "or dropped the connection (list models: ConnectError).")
    assert int(response.headers["retry-after"]) > 0
    ready = httpx.get(f"{gw.url}/ready")
    assert_envelope(ready, 503, "backend_unavailable")
    assert httpx.get(f"{gw.url}/health").json() == {"status": "ok"}


def test_request_id_is_generated_when_absent_or_unsafe(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    first = httpx.get(f"{gw.url}/health").headers["x-request-id"]
    second = httpx.get(f"{gw.url}/health").headers["x-request-id"]
    assert first.startswith("req-") and first != second
    unsafe = httpx.get(f"{gw.url}/health", headers={"x-request-id": "x" * 500}).headers["x-request-id"]
    assert unsafe.startswith("req-")


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-key", "Basic c2VjcmV0", "Bearer", "bearer sk-right-one-but-longer"]
)
def test_api_key_required_on_v1(gateway_factory: GatewayFactory, header: str | None) -> None:
    gw = gateway_factory(api_keys="sk-right-one,sk-right-two")
    headers = {"authorization": header} if header else {}
    response = httpx.get(f"{gw.url}/v1/models", headers={**headers, "x-request-id": "auth-1"})
    error = assert_envelope(response, 401)
    assert error["type"] == "authentication_error"
    assert error["code"] in ("missing_api_key", "invalid_api_key")
    assert response.headers["x-request-id"] == "auth-1"


def test_right_api_key_passes_and_health_needs_none(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(api_keys="sk-right-one,sk-right-two")
    # Past authentication, the request reaches the (absent) backend: 503, not 401.
    response = httpx.get(f"{gw.url}/v1/models", headers={"authorization": "Bearer sk-right-two"})
    assert_envelope(response, 503, "no_backend")
    assert httpx.get(f"{gw.url}/health").status_code == 200
    assert httpx.get(f"{gw.url}/metrics").status_code == 200


def test_api_keys_never_logged(gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gw = gateway_factory(api_keys="sk-secret-value-42")
    for key in ("sk-secret-value-42", "sk-guessed-value-43"):
        httpx.get(f"{gw.url}/v1/models?api_key={key}", headers={"authorization": f"Bearer {key}"})
    # Only the server side's records: the test's own HTTP client logs the URLs it requests.
    server_side = [r for r in caplog.records if r.name.split(".")[0] in ("gateway", "uvicorn", "fastapi")]
    logged = "\n".join(record.getMessage() + str(record.__dict__) for record in server_side)
    assert "GET /v1/models" in logged
    assert "sk-secret-value-42" not in logged and "sk-guessed-value-43" not in logged


def test_n_other_than_one_is_400(gateway_factory: GatewayFactory) -> None:
    from tests.conftest import free_port

    gw = gateway_factory(vllm_url=f"http://127.0.0.1:{free_port()}")
    body = {"model": "videochat-r1.5", "n": 2, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{gw.url}/v1/chat/completions", json=body)
    error = assert_envelope(response, 400, "unsupported_value")
    assert error["param"] == "n"


@pytest.mark.parametrize(("bias", "param"), [
    ({"abc": 5}, "logit_bias.abc"),
    ({"151645": -101}, "logit_bias.151645"),
    ({"151645": "never"}, "logit_bias.151645"),
])
def test_bad_logit_bias_is_refused_naming_the_entry(gateway_factory: GatewayFactory, bias: dict[str, Any],
                                                param: str) -> None:
    gw = gateway_factory()
    body = {"model": "videochat-r1.5", "logit_bias": bias, "messages": [{"role": "user", "content": "hi"}]}
    error = assert_envelope(httpx.post(f"{gw.url}/v1/chat/completions", json=body), 422, "invalid_value")
    assert error["type"] == "invalid_request_error" and str(error["param"]).startswith(param), error


def test_metrics_count_requests_by_route_and_status(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    httpx.get(f"{gw.url}/v1/models")
    httpx.get(f"{gw.url}/v1/models")
    httpx.get(f"{gw.url}/no/such/route")
    text = httpx.get(f"{gw.url}/metrics").text
    assert 'vchat_http_requests_total{method="GET",route="/v1/models",status="503"} 2.0' in text
    assert 'vchat_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'vchat_http_request_duration_seconds_count{method="GET",route="/v1/models"} 2.0' in text


def test_request_body_over_the_limit_is_413(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(max_request_bytes=2**16)
    big = b'{"model": "m", "messages": [{"role": "user", "content": "' + b"x" * 2**17 + b'"}]}'
    announced = httpx.post(f"{gw.url}/v1/chat/completions", content=big, headers={"content-type": "application/json"})
    assert_envelope(announced, 413, "request_too_large")

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit must be enforced while counting
        for start in range(0, len(big), 4096):
            yield big[start:start + 4096]

    streamed = httpx.post(f"{gw.url}/v1/chat/completions", content=chunked(),
                          headers={"content-type": "application/json"})
    assert "content-length" not in streamed.request.headers
    assert_envelope(streamed, 413, "request_too_large")


def test_an_excerpt_is_short_escaped_and_a_whole_literal() -> None:
    assert excerpt("videochat-r1.5") == "'videochat-r1.5'"
    assert excerpt("a\x00\r\n\x1b[2J\u202e") == "'a\\x00\\r\\n\\x1b[2J\\u202e'"
    shown = excerpt("\u202e" * 1000)
    assert shown == "'" + "\\u202e" * 10 + "'… (1000 characters)"  # 62 characters of literal: no escape is cut
    assert len(excerpt("x" * 10**6)) <= EXCERPT_CHARS + len("… (1000000 characters)")
