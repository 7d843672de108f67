"""The notifier's pure logic: signing, the back-off schedule, Retry-After, verdicts, duplicates, decoding."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Mapping

import pytest
from pydantic import ValidationError

from services.common.bus import Message, PoisonMessage
from services.common.bus.inprocess import InProcessBus
from services.notifier.config import NotifierConfig, NotifierSettings
from services.notifier.consumer import AlertNotifier, UndeliverableAlert, Webhook
from services.notifier.delivery import (
    DeliveredLog,
    MalformedAlert,
    Response,
    RetryPolicy,
    Verdict,
    alert_payload,
    backoff_s,
    classify,
    decode_alert,
    deliver,
    encode_body,
    parse_retry_after,
    request_headers,
    signature,
    verify,
)
from vigil.alert.v1 import alert_pb2

SECRET = b"0123456789abcdef-secret"


def make_alert(event_id: str = "e1") -> alert_pb2.Alert:
    event = {"event_type": "accident", "count": 2, "severity": "high", "summary": "two cars collide"}
    return alert_pb2.Alert(event_id=event_id, camera_id="cam-1", level=3, score=0.9, event_json=json.dumps(event))


# -- signing -----------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    # A fixed vector (computed once with hashlib/hmac): receivers in any language can check theirs.
    expected = "f3a0b906c723a6f9f78a962aca9b2198cd4952728fb149dada09c47a8de0d2eb"
    assert signature(SECRET, 1_700_000_000, b'{"event_id":"e1"}') == f"v1={expected}"


def test_verify_accepts_fresh_and_refuses_tampered_stale_or_foreign() -> None:
    body = encode_body({"event_id": "e1"})
    sig = signature(SECRET, 1000, body)
    assert verify(SECRET, "1000", body, sig, now=1100, tolerance_s=300)
    assert not verify(SECRET, "1000", body + b" ", sig, now=1100, tolerance_s=300)
    assert not verify(SECRET, "1000", body, sig, now=1400, tolerance_s=300)
    assert not verify(b"another-secret-of-16+", "1000", body, sig, now=1000, tolerance_s=300)
    assert not verify(SECRET, "not-a-time", body, sig, now=1000, tolerance_s=300)


def test_request_headers_carry_event_id_timestamp_and_signature() -> None:
    body = b"{}"
    headers = request_headers(SECRET, "e1", body, 1234, attempt=2)
    assert headers["X-Vigil-Event-Id"] == headers["Idempotency-Key"] == "e1"
    assert headers["X-Vigil-Timestamp"] == "1234"
    assert headers["X-Vigil-Attempt"] == "2"
    assert headers["X-Vigil-Signature"] == signature(SECRET, 1234, body)
    assert SECRET.decode() not in json.dumps(headers)


def test_body_is_stable_for_the_same_alert() -> None:
    a, b = encode_body(alert_payload(make_alert())), encode_body(alert_payload(make_alert()))
    assert a == b
    payload = json.loads(a)
    assert payload["type"] == "vigil.alert.v1" and payload["event"]["event_type"] == "accident"


# -- verdicts and back-off -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (None, Verdict.RETRY),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (301, Verdict.PERMANENT),
        (400, Verdict.PERMANENT),
        (401, Verdict.PERMANENT),
        (404, Verdict.PERMANENT),
        (410, Verdict.PERMANENT),
    ],
)
def test_classify(status: int | None, verdict: Verdict) -> None:
    assert classify(Response(status, error=None if status else "refused")) is verdict


def test_backoff_doubles_within_equal_jitter_and_caps() -> None:
    policy = RetryPolicy(max_attempts=10, initial_backoff_s=1.0, max_backoff_s=8.0)
    rng = random.Random(7)
    for attempt, step in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (9, 8.0)]:
        draws = [backoff_s(policy, attempt, rng) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in draws), (attempt, min(draws), max(draws))
        # Jitter: not one fixed value.
        assert max(draws) - min(draws) > step / 10


def test_retry_after_is_a_floor_with_its_own_cap() -> None:
    policy = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=8.0, max_retry_after_s=30.0)
    rng = random.Random(1)
    assert backoff_s(policy, 1, rng, retry_after_s=20.0) == 20.0
    assert backoff_s(policy, 1, rng, retry_after_s=3600.0) == 30.0
    assert backoff_s(policy, 1, rng, retry_after_s=0.0) >= 0.5


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("120", now=0) == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 60) == pytest.approx(60.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 + 60) == 0.0
    assert parse_retry_after(None, now=0) is None
    assert parse_retry_after("soon", now=0) is None


def _run(statuses: list[Response], policy: RetryPolicy, stop_after: int | None = None):  # type: ignore[no-untyped-def]
    calls: list[int] = []
    waits: list[float] = []

    def attempt(n: int) -> Response:
        calls.append(n)
        return statuses[n - 1]

    def wait(s: float) -> bool:
        waits.append(s)
        return stop_after is None or len(waits) < stop_after

    result = deliver(attempt, policy, wait=wait, clock=lambda: 0.0, rng=random.Random(0))
    return result, calls, waits


def test_deliver_retries_then_succeeds_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=0.1, max_backoff_s=1.0)
    result, calls, waits = _run([Response(503), Response(429, retry_after="7"), Response(200)], policy)
    assert result.delivered and result.attempts == 3 and calls == [1, 2, 3]
    assert 0.05 <= waits[0] <= 0.1 and waits[1] == 7.0


def test_deliver_stops_at_a_permanent_answer_and_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.1, max_backoff_s=1.0)
    result, calls, _ = _run([Response(503), Response(400)], policy)
    assert not result.delivered and calls == [1, 2] and result.describe() == "HTTP 400 after 2 attempts"
    result, calls, waits = _run([Response(None, error="refused")] * 3, policy)
    assert not result.delivered and calls == [1, 2, 3] and len(waits) == 2
    assert not result.interrupted


def test_deliver_is_interrupted_by_stop() -> None:
    result, calls, _ = _run([Response(503)] * 5, RetryPolicy(max_attempts=5), stop_after=1)
    assert result.interrupted and not result.delivered and calls == [1]


# -- duplicates ----------------------------------------------------------------------------------


def test_delivered_log_is_per_webhook_and_bounded() -> None:
    log = DeliveredLog(max_events=2)
    assert log.missing("a", ["ops", "pager"]) == ["ops", "pager"]
    log.mark("a", "ops")
    assert log.missing("a", ["ops", "pager"]) == ["pager"]
    log.mark("b", "ops")
    log.mark("a", "pager")  # touching "a" makes "b" the oldest
    log.mark("c", "ops")
    assert len(log) == 2
    assert log.missing("a", ["ops", "pager"]) == []
    assert log.missing("b", ["ops"]) == ["ops"]  # forgotten


# -- decoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        b"\xff\xff\xff not a protobuf",
        alert_pb2.Alert(camera_id="cam", event_json="{}").SerializeToString(),
        alert_pb2.Alert(event_id="e", event_json="{not json").SerializeToString(),
        alert_pb2.Alert(event_id="e", event_json="[1, 2]").SerializeToString(),
    ],
    ids=["garbage", "no-event-id", "event-not-json", "event-not-object"],
)
def test_malformed_alerts_are_named(value: bytes) -> None:
    with pytest.raises(MalformedAlert):
        decode_alert(value)


# -- the handler over a fake transport (pure logic: the HTTP path is the integration test's) ---


class Receiver:
    """Answers each URL with a script of statuses (the last one repeats)."""

    def __init__(self, script: dict[str, list[int]]) -> None:
        self.script = script
        self.got: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> Response:
        self.got.append((url, body, dict(headers)))
        statuses = self.script[url]
        return Response(statuses.pop(0) if len(statuses) > 1 else statuses[0])


def _msg(value: bytes, offset: int = 0) -> Message:
    return Message("alerts", 0, offset, b"k", value)


def _notifier(receiver: Receiver) -> AlertNotifier:
    hooks = [Webhook("ops", "http://ops.invalid/hook"), Webhook("pager", "http://pager.invalid/hook")]
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.002)
    return AlertNotifier(hooks, SECRET, policy, receiver, rng=random.Random(0))


def test_handler_delivers_once_per_webhook_and_skips_duplicates() -> None:
    receiver = Receiver({"http://ops.invalid/hook": [503, 200], "http://pager.invalid/hook": [200]})
    notifier = _notifier(receiver)
    value = make_alert("e1").SerializeToString()
    notifier(_msg(value))
    notifier(_msg(value, 1))
    assert [url for url, _, _ in receiver.got].count("http://ops.invalid/hook") == 2
    assert [url for url, _, _ in receiver.got].count("http://pager.invalid/hook") == 1
    _, body, headers = receiver.got[-1]
    assert verify(SECRET, headers["X-Vigil-Timestamp"], body, headers["X-Vigil-Signature"], 0, 1e12)


def test_handler_dead_letters_a_permanent_failure_and_later_sends_only_what_is_missing() -> None:
    receiver = Receiver({"http://ops.invalid/hook": [200], "http://pager.invalid/hook": [404]})
    notifier = _notifier(receiver)
    value = make_alert("e2").SerializeToString()
    with pytest.raises(UndeliverableAlert, match="pager: HTTP 404 after 1 attempt"):
        notifier(_msg(value))
    receiver.script["http://pager.invalid/hook"] = [200]
    receiver.got.clear()
    notifier(_msg(value, 1))
    assert [url for url, _, _ in receiver.got] == ["http://pager.invalid/hook"]


def test_handler_on_the_bus_dead_letters_malformed_and_undeliverable_and_keeps_going() -> None:
    bus = InProcessBus()
    receiver = Receiver({"http://ops.invalid/hook": [200], "http://pager.invalid/hook": [200]})
    consumer = bus.consumer(["alerts"], "g", _notifier(receiver), dead_letter_topic="alerts.dlq")
    bus.publish("alerts", b"\x00garbage")
    bus.publish("alerts", make_alert("e3").SerializeToString())
    while consumer.poll(0.1):
        pass
    assert consumer.dead_lettered == 1 and consumer.handled == 1
    assert {body and json.loads(body)["event_id"] for _, body, _ in receiver.got} == {"e3"}


def test_stop_during_back_off_leaves_the_record_undecided() -> None:
    receiver = Receiver({"http://ops.invalid/hook": [503], "http://pager.invalid/hook": [200]})
    hooks = [Webhook("ops", "http://ops.invalid/hook")]
    notifier = AlertNotifier(hooks, SECRET, RetryPolicy(max_attempts=5, initial_backoff_s=60), receiver)
    stop = threading.Event()
    stop.set()
    notifier.stop_on(stop)
    from services.common.bus import RetryableError

    with pytest.raises(RetryableError):
        notifier(_msg(make_alert("e4").SerializeToString()))


# -- settings ------------------------------------------------------------------------------------


def test_settings_from_env_keep_secrets_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://hooks.example.com/services/T000/B000/tokentokentoken"
    monkeypatch.setenv("VIGIL_NOTIFIER__WEBHOOKS", json.dumps([{"name": "ops", "url": url}]))
    monkeypatch.setenv("VIGIL_NOTIFIER__HMAC_SECRET", "s3cret-s3cret-s3cret")
    settings = NotifierSettings()
    cfg = settings.notifier
    assert cfg.problems() == []
    assert cfg.webhooks[0].url.get_secret_value() == url
    dumped = repr(settings) + str(settings.model_dump())
    assert "tokentoken" not in dumped and "s3cret" not in dumped


def test_settings_problems_are_actionable() -> None:
    assert any("VIGIL_NOTIFIER__WEBHOOKS" in p for p in NotifierConfig().problems())
    short = NotifierConfig.model_validate(
        {"webhooks": [{"name": "ops", "url": "http://a:1/"}, {"name": "ops", "url": "http://b:1/"}], "hmac_secret": "x"}
    )
    problems = " ".join(short.problems())
    assert "unique" in problems and "VIGIL_NOTIFIER__HMAC_SECRET" in problems
    with pytest.raises(ValidationError, match="http:// or https://") as info:
        NotifierConfig.model_validate({"webhooks": [{"name": "ops", "url": "ftp://token@host/x"}]})
    assert "token" not in str(info.value)
    with pytest.raises(ValidationError):
        NotifierConfig.model_validate({"webhooks": [{"name": "Ops Team", "url": "http://a:1/"}]})


def test_poison_is_a_poison_message() -> None:
    assert issubclass(UndeliverableAlert, PoisonMessage)


def test_webhooks_are_tried_side_by_side() -> None:
    # ops answers only once pager has been called: sequential delivery (ops first) would fail it.
    pager_called = threading.Event()

    def transport(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> Response:
        if "pager" in url:
            pager_called.set()
            return Response(200)
        return Response(200 if pager_called.wait(10) else 504)

    hooks = [Webhook("ops", "http://ops.invalid/hook"), Webhook("pager", "http://pager.invalid/hook")]
    notifier = AlertNotifier(hooks, SECRET, RetryPolicy(max_attempts=1), transport)
    try:
        notifier(_msg(make_alert("e5").SerializeToString()))
    finally:
        notifier.close()
