"""The HTTP POST of one attempt, over the standard library; every outcome becomes a `Response`."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from http.client import HTTPException
from typing import Any

from services.notifier.delivery import Response

# A receiver's answer body is read (so the connection ends cleanly) but never kept.
_MAX_READ_BYTES = 64 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects come back as their 3xx status: urllib would re-send a POST as a GET without the body."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> Response:
    """POST `body` to `url`; the status (and Retry-After), or the transport error, never an exception.

    Errors name the failure, not the URL: a webhook URL may carry a token.
    """
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout_s) as answer:
            answer.read(_MAX_READ_BYTES)
            return Response(answer.status, answer.headers.get("Retry-After"))
    except urllib.error.HTTPError as exc:
        try:
            exc.read(_MAX_READ_BYTES)
        except (OSError, HTTPException):
            pass  # the status is the answer; a body cut short changes nothing
        finally:
            exc.close()
        return Response(exc.code, exc.headers.get("Retry-After") if exc.headers else None)
    except urllib.error.URLError as exc:
        return Response(None, error=f"{type(exc.reason).__name__}: {exc.reason}")
    except (OSError, HTTPException) as exc:
        # Timeouts, resets and malformed answers all mean "try again later".
        return Response(None, error=f"{type(exc).__name__}: {exc}")
