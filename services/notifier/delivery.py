"""Webhook delivery, without I/O: the payload, the signature, the retry schedule and the duplicate log.

The signature scheme (docs/notifier.md): ``X-Vigil-Timestamp: <unix seconds>`` and
``X-Vigil-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``. The timestamp is signed
with the body so a receiver can refuse a replayed request; it is fresh on every attempt, the body is
the same bytes on every attempt.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from google.protobuf.message import DecodeError

from services.common.alerts import alert_record
from vigil.alert.v1 import alert_pb2

SIGNATURE_VERSION = "v1"
PAYLOAD_TYPE = "vigil.alert.v1"


class MalformedAlert(ValueError):
    """A record of the alerts topic that is no usable Alert."""


def decode_alert(value: bytes) -> alert_pb2.Alert:
    """The Alert in `value`; MalformedAlert says what is wrong with it."""
    try:
        alert = alert_pb2.Alert.FromString(value)
    except DecodeError as exc:
        raise MalformedAlert(f"not a vigil.alert.v1.Alert ({len(value)} bytes): {exc}") from exc
    if not alert.event_id:
        raise MalformedAlert("alert has no event_id (receivers de-duplicate on it)")
    try:
        event = json.loads(alert.event_json)
    except json.JSONDecodeError as exc:
        raise MalformedAlert(f"alert {alert.event_id}: event_json is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise MalformedAlert(f"alert {alert.event_id}: event_json is a {type(event).__name__}, not an object")
    return alert


def alert_payload(alert: alert_pb2.Alert) -> dict[str, Any]:
    """The JSON object a webhook receives for one alert (documented in docs/notifier.md): the record
    `vigil alerts --json` prints, typed for webhooks, with the alert's three timestamps."""
    return {
        **alert_record(alert),
        "type": PAYLOAD_TYPE,
        "capture_time_ns": alert.capture_time_ns,
        "created_time_ns": alert.created_time_ns,
        "sent_time_ns": alert.sent_time_ns,
    }


def encode_body(payload: dict[str, Any]) -> bytes:
    """Compact, key-sorted JSON: the same alert always signs to the same bytes."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The X-Vigil-Signature value for `body` sent at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify(secret: bytes, timestamp: str, body: bytes, signature_header: str, now: float, tolerance_s: float) -> bool:
    """What a receiver does: the signature matches and the timestamp is within `tolerance_s` of `now`."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, ts, body), signature_header)


def request_headers(secret: bytes, event_id: str, body: bytes, timestamp: int, attempt: int) -> dict[str, str]:
    """Every header of one attempt: content type, the event id (the receiver's de-duplication key), signature."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "vigil-notifier/1",
        "X-Vigil-Event-Id": event_id,
        "Idempotency-Key": event_id,
        "X-Vigil-Attempt": str(attempt),
        "X-Vigil-Timestamp": str(timestamp),
        "X-Vigil-Signature": signature(secret, timestamp, body),
    }


# -- what an answer means ---------------------------------------------------------------------


class Verdict(Enum):
    """What to do after one attempt."""

    DELIVERED = "delivered"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Response:
    """One attempt's answer: an HTTP status, or None with `error` when no response came."""

    status: int | None
    retry_after: str | None = None
    error: str | None = None

    def describe(self) -> str:
        """`HTTP 503` or the transport error, for logs and the dead-letter reason."""
        return f"HTTP {self.status}" if self.status is not None else f"no response ({self.error})"

    def result_label(self) -> str:
        """The `result` label of vigil_notifier_attempts_total: 2xx, 3xx, 4xx, 5xx or error."""
        return f"{self.status // 100}xx" if self.status is not None and 100 <= self.status < 600 else "error"


def classify(response: Response) -> Verdict:
    """2xx delivered; no response, 408, 429 and 5xx retried; anything else (4xx, a redirect) is permanent.

    A redirect is not followed: a POST turned into a GET by a redirect would lose the alert, so a
    moved receiver is a configuration error to fix, reported at once.
    """
    status = response.status
    if status is None or status in (408, 429) or 500 <= status < 600:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    return Verdict.PERMANENT


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


# -- the retry schedule ------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently one webhook is tried for one alert."""

    max_attempts: int = 6
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    max_retry_after_s: float = 300.0


def backoff_s(policy: RetryPolicy, attempt: int, rng: random.Random, retry_after_s: float | None = None) -> float:
    """The wait after failed attempt `attempt` (1-based).

    Exponential, capped at max_backoff_s, with "equal jitter": a uniform draw from the upper half of
    the step, so receivers recovering from an outage are not hit by every notifier at once, and a
    retry never comes sooner than half the step. A receiver's Retry-After is a floor, itself capped.
    """
    step = min(policy.max_backoff_s, policy.initial_backoff_s * 2 ** (attempt - 1))
    delay = step / 2 + rng.uniform(0, step / 2)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, policy.max_retry_after_s))
    return delay


@dataclass(frozen=True)
class DeliveryResult:
    """How one webhook's delivery of one alert ended."""

    delivered: bool
    attempts: int
    last: Response | None
    # The stop event interrupted the back-off: nothing is decided, the record must be handled again.
    interrupted: bool = False

    def describe(self) -> str:
        """One phrase for logs and the dead-letter reason."""
        last = self.last.describe() if self.last is not None else "not tried"
        return f"{last} after {self.attempts} attempt{'s' if self.attempts != 1 else ''}"


def deliver(
    attempt: Callable[[int], Response],
    policy: RetryPolicy,
    *,
    wait: Callable[[float], bool],
    clock: Callable[[], float],
    rng: random.Random,
    on_attempt: Callable[[Response], None] = lambda _r: None,
) -> DeliveryResult:
    """Try `attempt(n)` until delivered, a permanent answer, or max_attempts; back off between tries.

    `wait(seconds)` sleeps and returns False when the service is stopping (the result is then
    `interrupted`). Transport and time are passed in, so the schedule is tested without a network.
    """
    response: Response | None = None
    for n in range(1, policy.max_attempts + 1):
        response = attempt(n)
        on_attempt(response)
        verdict = classify(response)
        if verdict is Verdict.DELIVERED:
            return DeliveryResult(True, n, response)
        if verdict is Verdict.PERMANENT or n == policy.max_attempts:
            return DeliveryResult(False, n, response)
        delay = backoff_s(policy, n, rng, parse_retry_after(response.retry_after, clock()))
        if not wait(delay):
            return DeliveryResult(False, n, response, interrupted=True)
    return DeliveryResult(False, policy.max_attempts, response)


# -- duplicates --------------------------------------------------------------------------------


class DeliveredLog:
    """Which webhooks already have which event, for the last `max_events` events (oldest forgotten first).

    Per webhook, so an alert that reached one receiver and was dead-lettered for another is, when
    it shows up again, pushed only to the one that missed it.
    """

    def __init__(self, max_events: int) -> None:
        self._max = max_events
        self._done: OrderedDict[str, set[str]] = OrderedDict()

    def missing(self, event_id: str, webhooks: Iterable[str]) -> list[str]:
        """The webhooks (in the given order) that have not received `event_id`."""
        done = self._done.get(event_id, set())
        return [w for w in webhooks if w not in done]

    def mark(self, event_id: str, webhook: str) -> None:
        """`webhook` received `event_id`."""
        done = self._done.get(event_id)
        if done is None:
            done = self._done[event_id] = set()
        else:
            self._done.move_to_end(event_id)
        done.add(webhook)
        while len(self._done) > self._max:
            self._done.popitem(last=False)

    def __len__(self) -> int:
        return len(self._done)
