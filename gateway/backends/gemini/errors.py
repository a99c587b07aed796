"""Gemini's SDK, transport and timeout errors translated into the gateway's, the API key scrubbed from each text:

    APIError 408, 504, a deadline, an httpx timeout  → BackendTimeout (504)
    APIError 429, 5xx, transport errors, unreadable  → BackendUnavailable (503, Retry-After from Gemini or 5 s)
    APIError 401, 403, 404, a rejected API key       → BackendUnavailable (503): Gemini is unusable as configured
    APIError 400 and other 4xx, a FAILED video, an
    answer without text (blocked, MAX_TOKENS…)       → GeminiRefused (502 gemini_refused): this request, not Gemini
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import ClassVar

import httpx2
from google.genai import errors as genai_errors

from gateway.backends.gemini.config import GeminiConfig
from gateway.backends.gemini.deadline import Deadline
from gateway.backends.gemini.scrub import scrub
from gateway.errors import BackendRefused, BackendTimeout, BackendUnavailable, VChatError

RETRY_AFTER_S = 5


class GeminiRefused(BackendRefused):
    """Raised when Gemini refuses one request the gateway built (a 400, a video it cannot process, no answer)."""

    default_code: ClassVar[str | None] = "gemini_refused"


@contextlib.contextmanager
def translated(deadline: Deadline, config: GeminiConfig) -> Iterator[None]:
    """SDK, transport and timeout errors → the gateway's errors, with the API key scrubbed from every text."""
    try:
        yield
    except VChatError:
        raise
    except TimeoutError:
        raise BackendTimeout(f"Gemini did not answer within {deadline.seconds:g} s.",
                             retry_after=RETRY_AFTER_S) from None
    except genai_errors.APIError as exc:
        raise _from_api_error(exc, config) from None
    except httpx2.TimeoutException as exc:
        raise BackendTimeout(f"Gemini did not answer in time ({type(exc).__name__}).",
                             retry_after=RETRY_AFTER_S) from None
    except httpx2.TransportError as exc:
        raise BackendUnavailable(f"Gemini is unreachable ({type(exc).__name__}).",
                                 retry_after=RETRY_AFTER_S) from None
    except (ValueError, KeyError) as exc:  # the SDK's unreadable answers (JSON, validation, upload protocol)
        raise BackendUnavailable(f"Gemini answered with something the gateway cannot read "
                                 f"({type(exc).__name__}).", retry_after=RETRY_AFTER_S) from None


def _from_api_error(exc: genai_errors.APIError, config: GeminiConfig) -> VChatError:
    what = f"HTTP {exc.code}" + (f" {exc.status}" if exc.status else "")
    said = scrub(str(exc.message or ""), config.api_key.get_secret_value())[:300]
    hinted = retry_after_s(exc)
    retry_after = math.ceil(hinted) if hinted is not None else RETRY_AFTER_S
    if exc.code in (408, 504):
        return BackendTimeout(f"Gemini timed out ({what}): {said}", retry_after=retry_after)
    if exc.code == 429:
        return BackendUnavailable(f"Gemini is rate-limiting the gateway ({what}): {said}", retry_after=retry_after,
                                  code="gemini_rate_limited")
    if exc.code >= 500:
        return BackendUnavailable(f"Gemini is unavailable ({what}): {said}", retry_after=retry_after)
    if exc.code in (401, 403) or key_rejected(exc):
        return BackendUnavailable(f"Gemini refused the gateway's credentials ({what}): {said}",
                                  retry_after=RETRY_AFTER_S, code="gemini_auth_failed")
    if exc.code == 404:
        return BackendUnavailable(f"Gemini does not serve model '{config.model}' ({what}): {said}",
                                  retry_after=RETRY_AFTER_S, code="gemini_model_not_found")
    return GeminiRefused(f"Gemini refused the request ({what}): {said}")


def key_rejected(exc: genai_errors.APIError) -> bool:
    """Whether Gemini said the API key itself is invalid (whatever the status code)."""
    return "API_KEY_INVALID" in str(exc.details) or "API key not valid" in str(exc.message or "")


def retry_after_s(exc: genai_errors.APIError) -> float | None:
    """Seconds Gemini asks to wait: the Retry-After header, else a google.rpc.RetryInfo ``retryDelay``."""
    headers = getattr(exc.response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):
                return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    error = exc.details.get("error", exc.details) if isinstance(exc.details, dict) else {}
    for detail in (error.get("details") or []) if isinstance(error, dict) else []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            with contextlib.suppress(ValueError):
                return max(0.0, float(delay[:-1]))
    return None


def summary(exc: BaseException | None) -> str:
    """One line about a failure for the log (not yet scrubbed)."""
    if isinstance(exc, VChatError):
        return exc.message
    if isinstance(exc, genai_errors.APIError):
        return f"HTTP {exc.code} {exc.status or ''}: {exc.message or ''}".strip()
    return type(exc).__name__ if exc is not None else "unknown"
