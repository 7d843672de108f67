"""The console against a real Kafka-protocol broker (Tansu) and real uvicorn on port 0: alerts, evidence and a
malformed record on the topics; the live stream read by an HTTP client; the token; an unreachable reasoning."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from services.common.bus import Message
from services.common.bus.kafka import KafkaBus
from services.common.config import BusConfig, GrpcClientSecurity, GrpcServerSecurity, SigningConfig, TopicsConfig
from services.common.pki import new_signing_key
from services.common.signing import Keyring, Signer
from services.console.bootstrap import ConsoleStage, build
from services.console.config import ConsoleConfig, ConsoleSettings
from services.memory.config import RetrievalConfig
from services.memory.frame_store import ClusterRecord, FrameStore, MemberFrame
from services.memory.local import LocalMemory
from services.memory.qdrant_edge_store import QdrantEdgeStore
from services.memory.retriever import Retriever
from services.memory.store import FramePayload, IndexPoint
from tests.fixtures.pki import Pki
from tests.fixtures.tcp_proxy import free_port
from tests.unit.test_retriever import KeywordEmbedder
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


# -- link security: signed records only, Ask over TLS with the console's token ----------------------------


def _rejected(topic: str, reason: str) -> float:
    return REGISTRY.get_sample_value("vigil_signing_rejected_total", {"topic": topic, "reason": reason}) or 0.0


def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.mark.slow
def test_only_signed_alerts_and_evidence_are_shown_forged_ones_are_dead_lettered(
    kafka_bus_config: Callable[..., BusConfig], unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    keys = tmp_path / "signing-keys"
    keys.write_text(f"site-1 {new_signing_key()}\n")
    signer = Signer(Keyring.load(keys), "site-1")
    # The same key id with another secret: what someone without the site's key can produce.
    forger = Signer(Keyring.parse(f"site-1 {new_signing_key()}"), "site-1")
    alerts, evidence = unique_topic("alerts"), unique_topic("evidence")
    settings = ConsoleSettings(
        bus=kafka_bus_config(),
        topics=TopicsConfig(alerts=alerts, evidence=evidence),
        signing=SigningConfig(keys_file=keys),
        console=ConsoleConfig(port=0, token=SecretStr(TOKEN), evidence_deadline_s=30.0),
    )
    bus = KafkaBus(settings.bus)
    bus.create_topics([alerts, evidence, alerts + ".dlq", evidence + ".dlq"], num_partitions=1)

    def publish(topic: str, value: bytes, key: str, by: Signer | None) -> None:
        bus.publish(topic, value, key=key, headers=by.headers(topic, key, value) if by is not None else None)

    before = {r: _rejected(alerts, r) for r in ("forged", "unsigned")}
    before_evidence = _rejected(evidence, "forged")
    publish(alerts, _alert("ev-ok"), "ev-ok", signer)
    publish(alerts, _alert("ev-forged"), "ev-forged", forger)
    publish(alerts, _alert("ev-unsigned"), "ev-unsigned", None)
    # A signed record whose payload was swapped on the way: the signature no longer matches.
    genuine = signer.headers(alerts, "ev-altered", _alert("ev-altered"))
    bus.publish(alerts, _alert("ev-altered", camera="cam-spoofed"), key="ev-altered", headers=genuine)
    # A forged boxed image for the genuine alert, then its genuine ROI crop.
    publish(evidence, _evidence("ev-ok", event_pb2.EVIDENCE_KIND_BOX), "ev-ok", forger)
    publish(evidence, _evidence("ev-ok"), "ev-ok", signer)
    # Records of one partition are handled in order: once ev-last shows, every alert before it was judged.
    publish(alerts, _alert("ev-last"), "ev-last", signer)
    bus.flush()

    stop = threading.Event()
    stage = build(settings, bus)
    stage.start(stop, serve=False)
    dead: list[Message] = []
    readers = [bus.consumer([t + ".dlq"], unique_topic("dlq-reader"), dead.append) for t in (alerts, evidence)]
    try:
        client = httpx.Client(base_url=stage.url(), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

        def shown() -> dict[str, list[str]]:
            return {r["event_id"]: sorted(r["evidence"]) for r in client.get("/api/alerts").json()}

        _wait(lambda: shown() == {"ev-ok": ["roi"], "ev-last": []}, 60, "the signed alerts and the ROI crop")
        page = client.get("/").text
        for never in ("ev-forged", "ev-unsigned", "ev-altered", "cam-spoofed"):
            assert never not in page
        assert client.get("/alerts/ev-forged").status_code == 404
        assert _rejected(alerts, "forged") == before["forged"] + 2  # ev-forged and ev-altered
        assert _rejected(alerts, "unsigned") == before["unsigned"] + 1
        assert _rejected(evidence, "forged") == before_evidence + 1

        def poll_dead() -> bool:
            for reader in readers:
                reader.poll(0.5)
            return len(dead) >= 4

        _wait(poll_dead, 60, "four dead letters")
        assert sorted((m.topic, m.key) for m in dead) == [
            (alerts + ".dlq", b"ev-altered"),
            (alerts + ".dlq", b"ev-forged"),
            (alerts + ".dlq", b"ev-unsigned"),
            (evidence + ".dlq", b"ev-ok"),
        ]
        reasons = " ".join(m.headers["vigil-error"].decode() for m in dead)
        assert "does not match the record" in reasons and "unsigned record" in reasons
    finally:
        for reader in readers:
            reader.close()
        stop.set()
        stage.close(join_timeout_s=10)
        bus.close()


def _keyword_memory(root: Path) -> tuple[LocalMemory, QdrantEdgeStore]:
    """A real Qdrant Edge shard and frame store with three scenes, read through a keyword stand-in embedder."""
    embedder = KeywordEmbedder()
    store = QdrantEdgeStore(root / "qdrant")
    store.ensure_collection(embedder.vector_specs)
    frames = FrameStore(root / "frames")
    points = []
    for k, (start, text) in enumerate([(0.0, "person"), (2.0, "car"), (4.0, "bicycle")]):
        members = [MemberFrame(start + i * 0.2, 0, i) for i in range(10)]
        for m in members:
            frames.put_frame("cam-it", m.time_s, f"cam-it@{m.time_s:.1f}".encode())
        point_id = f"00000000-0000-0000-0000-{k:012d}"
        frames.put_cluster(ClusterRecord(point_id, "cam-it", members), b"index")
        payload = FramePayload("cam-it", 0, k, start, members[-1].time_s, 5, 10, text, members[5].time_s, "keyword")
        points.append(IndexPoint(point_id, {"text": embedder.vec(text)}, payload))
    store.upsert(points)
    config = RetrievalConfig(temperature=0.05, theta=0.8, lam=0.25, max_frames_cap=4)
    return LocalMemory(Retriever(store, frames, embedder, config)), store


@pytest.mark.slow
def test_ask_goes_through_a_tls_reasoning_service_with_the_consoles_token(
    kafka_bus_config: Callable[..., BusConfig], unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    from services.reasoning.bootstrap import build as build_reasoning
    from services.reasoning.config import ReasoningSettings

    pki = Pki.create(tmp_path / "pki")
    tokens_file, tokens = pki.tokens("operator", "console", "reasoning")
    memory, store = _keyword_memory(tmp_path / "memory")
    # A real reasoning server on port 0 as the chart configures it: TLS, tokens, Ask for operator and console.
    reasoning = build_reasoning(
        ReasoningSettings(
            grpc_address="127.0.0.1:0",
            grpc_security=GrpcServerSecurity(
                tls=pki.cert("reasoning"), tokens_file=tokens_file, allow={"Ask": ["operator", "console"]}
            ),
        ),
        memory=memory,
    )
    stop = threading.Event()
    reasoning.start(stop)
    assert reasoning.endpoint is not None
    address = f"localhost:{reasoning.endpoint.port}"

    def console_with(security: GrpcClientSecurity | None) -> ConsoleStage:
        settings = ConsoleSettings(
            bus=kafka_bus_config(),
            topics=TopicsConfig(alerts=unique_topic("alerts"), evidence=unique_topic("evidence")),
            console=ConsoleConfig(
                port=0,
                token=SecretStr(TOKEN),
                reasoning_address=address,
                reasoning_security=security,
                ask_timeout_s=20.0,
                health_interval_s=0.5,
            ),
        )
        stage = build(settings, bus)
        stage.start(stop, serve=False)
        return stage

    bus = KafkaBus(kafka_bus_config())
    consoles: list[ConsoleStage] = []
    try:
        consoles = [
            console_with(pki.client(token=tokens["console"])),
            console_with(pki.client(token=tokens["reasoning"])),  # a token, but not one Ask admits
            console_with(None),  # plaintext against a TLS server
        ]
        ok, wrong, plain = (
            httpx.Client(base_url=c.url(), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) for c in consoles
        )
        answer = ok.post("/ask", data={"question": "a person", "camera": "cam-it", "mode": "top-k"})
        assert answer.status_code == 200, answer.text
        assert 'class="answer-text"' in answer.text and "keyword-test" in answer.text
        assert answer.text.count('class="keyframe"') >= 1
        denied = wrong.post("/ask", data={"question": "a person"})
        assert (
            denied.status_code == 503
            and "PERMISSION_DENIED" in denied.text
            and "not allowed for &#39;reasoning&#39;" in denied.text
        )
        refused = plain.post("/ask", data={"question": "a person"})
        assert refused.status_code == 503 and "UNAVAILABLE" in refused.text
        assert tokens["console"] not in answer.text + denied.text + refused.text

        def reasoning_health(client: httpx.Client) -> dict[str, Any]:
            return next(h for h in client.get("/api/health").json() if h["name"] == "reasoning")

        _wait(lambda: reasoning_health(ok)["ok"] is True, 20, "the TLS health probe to pass")
        assert "(TLS)" in reasoning_health(ok)["detail"]
        _wait(lambda: reasoning_health(plain)["checked_ns"] > 0, 20, "the plaintext probe to run")
        assert reasoning_health(plain)["ok"] is False
    finally:
        stop.set()
        for stage in consoles:
            stage.close(join_timeout_s=10)
        reasoning.close(grace_s=1)
        store.close()
        bus.close()
