"""The console against a real Kafka-protocol broker (Tansu) and real uvicorn on port 0: alerts, evidence and a
malformed record on the topics; the live stream read by an HTTP client; the token; an unreachable reasoning."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from services.common.bus.kafka import KafkaBus
from services.common.config import TopicsConfig
from services.console.bootstrap import ConsoleStage, build
from services.console.config import ConsoleConfig, ConsoleSettings
from tests.fixtures.tcp_proxy import free_port
from vigil.alert.v1 import alert_pb2
from vigil.event.v1 import event_pb2

TOKEN = "integration-test-token-0123"
S = 1_000_000_000


def _alert(event_id: str, camera: str = "cam-it") -> bytes:
    now = time.time_ns()
    event = {"event_type": "accident", "count": 1, "severity": "severe", "level": 1, "score": 0.8, "summary": "x"}
    event["objects"] = [{"label": "accident", "bbox": [100, 100, 400, 300]}]
    return alert_pb2.Alert(
        event_id=event_id,
        camera_id=camera,
        capture_time_ns=now - S,
        created_time_ns=now - S // 2,
        sent_time_ns=now,
        level=1,
        score=0.8,
        event_json=json.dumps(event),
        roi_bytes=5,
        box_bytes=9,
    ).SerializeToString()


def _evidence(
    event_id: str, kind: event_pb2.EvidenceKind = event_pb2.EVIDENCE_KIND_ROI, content_type: str = "image/jpeg"
) -> bytes:
    unit = event_pb2.EvidenceUnit(kind=kind, payload=b"\xff\xd8roi", content_type=content_type)
    return alert_pb2.Evidence(
        event_id=event_id, camera_id="cam-it", unit=unit, sent_time_ns=time.time_ns()
    ).SerializeToString()


def _malformed() -> float:
    return REGISTRY.get_sample_value("vigil_console_malformed_records_total", {"topic_kind": "alert"}) or 0.0


@pytest.fixture
def console(kafka_bus_config, unique_topic) -> Iterator[tuple[ConsoleStage, KafkaBus, ConsoleSettings]]:
    topics = {"alerts": unique_topic("alerts"), "evidence": unique_topic("evidence")}
    settings = ConsoleSettings(
        bus=kafka_bus_config(),
        topics=TopicsConfig(**topics),
        console=ConsoleConfig(
            port=0,
            token=SecretStr(TOKEN),
            # Nothing listens here: Ask must say so, and the health area must name reasoning.
            reasoning_address=f"127.0.0.1:{free_port()}",
            ask_timeout_s=3.0,
            health_interval_s=0.5,
            evidence_deadline_s=30.0,
        ),
    )
    bus = KafkaBus(settings.bus)
    bus.create_topics([topics["alerts"], topics["evidence"]])
    stage = build(settings, bus)
    stop = threading.Event()
    stage.start(stop, serve=False)
    try:
        yield stage, bus, settings
    finally:
        stop.set()
        stage.close(join_timeout_s=10)
        bus.close()


def _sse_events(client: httpx.Client, want: int, timeout_s: float, **headers: str) -> list[dict[str, Any]]:
    """Read `want` SSE events (id, event, data) from /events."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", "/events?since=0", headers=headers, timeout=timeout_s) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if not line:
                if "event" in current:
                    events.append(current)
                    if len(events) >= want:
                        return events
                current = {}
                continue
            field, _, value = line.partition(": ")
            if field in ("id", "event"):
                current[field] = value
            elif field == "data":
                current["data"] = json.loads(value)
    return events


@pytest.mark.slow
def test_alerts_evidence_and_a_malformed_record_through_kafka(console) -> None:
    stage, bus, settings = console
    before = _malformed()
    topics = settings.topics
    bus.publish(topics.alerts, _alert("ev-1"), key="ev-1")
    bus.publish(topics.alerts, b"\x08\xff\xff not an alert", key="bad")
    bus.publish(topics.alerts, _alert("ev-1"), key="ev-1")  # redelivered: one row
    bus.publish(topics.evidence, _evidence("ev-1"), key="ev-1")
    bus.publish(topics.alerts, _alert("ev-2"), key="ev-2")
    bus.publish(topics.evidence, _evidence("ev-2", event_pb2.EVIDENCE_KIND_BOX), key="ev-2")
    # A record claiming to be HTML must not be served as a page of this origin.
    bus.publish(topics.evidence, _evidence("ev-2", content_type="text/html"), key="ev-2")
    bus.flush()
    client = httpx.Client(base_url=stage.url(), headers={"Authorization": f"Bearer {TOKEN}"})
    deadline = time.monotonic() + 60
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = client.get("/api/alerts").json()
        if (
            len(rows) == 2
            and {r["event_id"]: len(r["evidence"]) for r in rows} == {"ev-1": 1, "ev-2": 2}
            and _malformed() > before
        ):
            break
        time.sleep(0.3)
    assert sorted(r["event_id"] for r in rows) == ["ev-1", "ev-2"]
    assert {r["event_id"]: r["evidence_state"] for r in rows} == {"ev-1": "pending", "ev-2": "complete"}
    assert next(r for r in rows if r["event_id"] == "ev-1")["evidence"]["roi"]["bytes"] == 5
    assert _malformed() == before + 1, "the malformed record is skipped and counted"
    # (the bus dead-letters it to <topic>.dlq, so it is not lost) and the page stays up:
    assert client.get("/healthz").status_code == 200

    page = client.get("/")
    assert page.status_code == 200 and page.text.count('id="alert-ev-1"') == 1
    assert "/evidence/ev-1/roi" in page.text and "/evidence/ev-2/box" in page.text
    evidence = client.get("/evidence/ev-1/roi")
    assert evidence.content == b"\xff\xd8roi" and evidence.headers["content-type"] == "image/jpeg"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/evidence/ev-2/roi").headers["content-type"] == "application/octet-stream"
    detail = client.get("/alerts/ev-1")
    assert detail.status_code == 200 and "frame_to_roi_ms" in detail.text and "boxed image is pending" in detail.text
    boxed = client.get("/alerts/ev-2")
    assert boxed.status_code == 200 and boxed.text.count("<rect") == 1 and "frame_to_box_ms" in boxed.text

    # The live stream from the start: each row once (ev-1 drawn with its evidence), then the cameras table.
    events = _sse_events(client, want=3, timeout_s=20)
    alert_events = [e for e in events if e["event"] == "alert"]
    assert sorted(e["data"]["id"] for e in alert_events) == ["ev-1", "ev-2"]
    assert "evidence-img" in next(e for e in alert_events if e["data"]["id"] == "ev-1")["data"]["html"]
    # A reconnect with Last-Event-ID gets only what came after it: a new alert, never the old rows again.
    last = max(int(e["id"]) for e in events)
    bus.publish(topics.alerts, _alert("ev-3"), key="ev-3")
    bus.flush()
    resumed = _sse_events(client, want=1, timeout_s=30, **{"Last-Event-ID": str(last)})
    assert [e["data"].get("id") for e in resumed if e["event"] == "alert"] == ["ev-3"]


@pytest.mark.slow
def test_token_ask_errors_and_health_say_what_is_wrong(console) -> None:
    stage, _bus, _settings = console
    anonymous = httpx.Client(base_url=stage.url())
    assert anonymous.get("/").status_code == 401
    assert anonymous.get("/api/alerts").status_code == 401
    assert anonymous.get("/healthz").status_code == 200 and anonymous.get("/static/console.js").status_code == 200
    # ?token= once sets the cookie and redirects to the same page without it.
    opened = anonymous.get(f"/?token={TOKEN}", follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/"
    with_cookie = httpx.Client(base_url=stage.url(), cookies={"vigil_console_token": TOKEN})
    assert with_cookie.get("/").status_code == 200
    assert httpx.get(f"{stage.url()}?token=wrong-token-wrong-token").status_code == 401

    client = httpx.Client(base_url=stage.url(), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    empty = client.post("/ask", data={"question": "  "})
    assert empty.status_code == 400 and "the question is empty" in empty.text
    bad_range = client.post("/ask", data={"question": "a crash", "since": "yesterday"})
    assert bad_range.status_code == 400 and "since must be seconds" in bad_range.text
    down = client.post("/ask", data={"question": "a crash"})
    assert down.status_code == 503 and "reasoning service at 127.0.0.1:" in down.text
    assert "Traceback" not in down.text
    deadline = time.monotonic() + 20
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        health = {h["name"]: h for h in client.get("/api/health").json()}
        if "kafka" in health and health["kafka"]["checked_ns"] and health["reasoning"]["checked_ns"]:
            break
        time.sleep(0.3)
    assert health["kafka"]["ok"], health
    assert not health["reasoning"]["ok"] and "unreachable" in health["reasoning"]["detail"]
    assert "UNREACHABLE" in client.get("/fragments/health").text


@pytest.mark.slow
def test_a_question_the_reasoning_service_rejects_shows_its_message(kafka_bus_config, unique_topic) -> None:
    from services.reasoning.bootstrap import build as build_reasoning
    from services.reasoning.config import ReasoningConfig, ReasoningSettings

    # A real reasoning server on port 0 whose edge memory is not there.
    memory_address = f"127.0.0.1:{free_port()}"
    reasoning = build_reasoning(
        ReasoningSettings(
            grpc_address="127.0.0.1:0",
            reasoning=ReasoningConfig(memory_address=memory_address, memory_timeout_s=2.0),
        )
    )
    stop = threading.Event()
    reasoning.start(stop)
    assert reasoning.endpoint is not None
    settings = ConsoleSettings(
        bus=kafka_bus_config(),
        topics=TopicsConfig(alerts=unique_topic("alerts"), evidence=unique_topic("evidence")),
        console=ConsoleConfig(
            port=0,
            token=SecretStr(TOKEN),
            reasoning_address=f"127.0.0.1:{reasoning.endpoint.port}",
            ask_timeout_s=10.0,
            health_interval_s=0.5,
        ),
    )
    bus = KafkaBus(settings.bus)
    console = build(settings, bus)
    console.start(stop, serve=False)
    try:
        client = httpx.Client(base_url=console.url(), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        too_long = client.post("/ask", data={"question": "x" * 2100})
        assert too_long.status_code == 400, too_long.text
        assert "the question is 2100 characters; the limit is 2000" in too_long.text
        assert "Traceback" not in too_long.text
        no_memory = client.post("/ask", data={"question": "a car crash"})
        assert no_memory.status_code == 503 and f"edge memory at {memory_address}" in no_memory.text
        health = {h["name"]: h for h in client.get("/api/health").json()}
        assert health["memory"]["ok"] is False and "last question" in health["memory"]["detail"]
        deadline = time.monotonic() + 20
        while not health["reasoning"]["checked_ns"] and time.monotonic() < deadline:
            time.sleep(0.3)
            health = {h["name"]: h for h in client.get("/api/health").json()}
        assert health["reasoning"]["ok"], health
    finally:
        stop.set()
        console.close(join_timeout_s=10)
        reasoning.close(grace_s=1)
        bus.close()
