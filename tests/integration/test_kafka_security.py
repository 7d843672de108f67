"""Kafka TLS/SASL settings as far as the client goes, and signed alerts end to end through a real broker.

Tansu speaks neither TLS nor SASL, so no test here completes a TLS session with a Kafka broker: the
settings are checked on the kafka-python objects they build, the TLS handshake against a real TLS
listener on loopback, and an SSL client against Tansu must fail with an error that says why.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaConnectionError
from pydantic import SecretStr

from services.common.bus import Message
from services.common.bus.kafka import BrokerUnavailable, KafkaBus, tls_preflight
from services.common.config import BusConfig, SigningConfig, TopicsConfig
from services.common.pki import new_signing_key
from services.common.signing import Keyring, Signer
from services.uplink.bootstrap import build as build_uplink
from services.uplink.config import UplinkConfig, UplinkSettings
from tests.fixtures.pki import Pki
from tests.integration.test_uplink_service import make_event
from vigil.alert.v1 import alert_pb2

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


def test_ssl_and_sasl_settings_reach_kafka_python(pki: Pki, tmp_path: Path) -> None:
    client = pki.cert("edge-uplink")
    (tmp_path / "password").write_text("kafka-password\n")
    cfg = BusConfig(
        kind="kafka",
        bootstrap="kafka.cloud.example:9093",
        security_protocol="SASL_SSL",
        ssl_cafile=pki.ca_file,
        ssl_certfile=client.cert,
        ssl_keyfile=client.key,
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="site-a",
        sasl_password_file=tmp_path / "password",
    )
    bus = KafkaBus(cfg)
    # The consumer's own constructor, as the bus calls it (api_version given: it does not connect yet).
    consumer = KafkaConsumer(bootstrap_servers=cfg.bootstrap, api_version=(2, 8), **bus.security)
    try:
        for key, value in {
            "security_protocol": "SASL_SSL",
            "ssl_cafile": str(pki.ca_file),
            "ssl_certfile": str(client.cert),
            "ssl_keyfile": str(client.key),
            "ssl_check_hostname": True,
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_plain_username": "site-a",
            "sasl_plain_password": "kafka-password",
        }.items():
            assert consumer.config[key] == value, key
    finally:
        consumer.close()
    # A CA that is not there stops the bus at construction, naming the setting.
    with pytest.raises(ValueError, match=r"cannot read bus.ssl_cafile .*nope.crt"):
        KafkaBus(cfg.model_copy(update={"ssl_cafile": tmp_path / "nope.crt"}))


@pytest.fixture
def tls_listener(pki: Pki) -> Iterator[tuple[str, int]]:
    """A real TLS server on loopback with a certificate for 127.0.0.1 (stands in for a broker's SSL listener)."""
    server = pki.cert("broker")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(server.cert), str(server.key))
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield "127.0.0.1", sock.getsockname()[1]
    stop.set()
    thread.join(2)
    sock.close()


def test_the_tls_preflight_trusts_the_configured_ca_only(pki: Pki, tls_listener: tuple[str, int]) -> None:
    host, port = tls_listener
    tls_preflight(BusConfig(bootstrap=f"{host}:{port}", security_protocol="SSL", ssl_cafile=pki.ca_file), 5.0)
    other = Pki.create(pki.root / "other", "Other CA")
    with pytest.raises(KafkaConnectionError, match=r"the broker's certificate is not trusted .*check ssl_cafile"):
        tls_preflight(BusConfig(bootstrap=f"{host}:{port}", security_protocol="SSL", ssl_cafile=other.ca_file), 5.0)


@pytest.mark.slow
def test_an_ssl_client_against_a_plaintext_broker_fails_clearly(tansu, pki: Pki, unique_topic) -> None:
    """Tansu cannot speak TLS: without the preflight kafka-python 3.0.12 would wait in the handshake for ever."""
    cfg = BusConfig(
        kind="kafka", bootstrap=tansu.bootstrap, security_protocol="SSL", ssl_cafile=pki.ca_file, publish_timeout_s=3
    )
    bus = KafkaBus(cfg)
    with pytest.raises(KafkaConnectionError, match=r"no TLS handshake within 3s .*does this listener speak SSL"):
        bus.broker_version(3000)
    with pytest.raises(BrokerUnavailable, match="no TLS handshake within 3s"):
        bus.publish(unique_topic("x"), b"v")
    bus.close()


def _dead_letters(bus: KafkaBus, topic: str, group: str, want: int, timeout_s: float = 30) -> list[Message]:
    got: list[Message] = []
    consumer = bus.consumer([topic], group, got.append)
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        consumer.poll(0.5)
    consumer.close()
    return got


@pytest.mark.slow
def test_signed_alerts_are_shown_and_forged_events_and_alerts_are_dead_lettered(
    tansu, tmp_path: Path, unique_topic: Callable[[str], str]
) -> None:
    """Gating signs events, the uplink forwards only signed ones and signs what it sends; `vigil alerts` with
    the keys shows those and dead-letters the rest."""
    keys = tmp_path / "signing-keys"
    keys.write_text(f"edge-2026 {new_signing_key()}\n")
    topics = TopicsConfig(
        events=unique_topic("events"), alerts=unique_topic("alerts"), evidence=unique_topic("evidence")
    )
    bus_cfg = BusConfig(kind="kafka", bootstrap=tansu.bootstrap, publish_timeout_s=15)
    settings = UplinkSettings(
        bus=bus_cfg,
        topics=topics,
        uplink=UplinkConfig(mode="pass-through", consumer_group=unique_topic("uplink")),
        signing=SigningConfig(keys_file=keys, key_id="edge-2026"),
    )
    bus = KafkaBus(bus_cfg)
    now = time.time_ns()
    events = [make_event(i, 1, 0.9, now) for i in range(2)]
    # Signed as gating signs them (services/gating/consumer.py), with the site's key.
    gating = Signer(Keyring.load(keys), "edge-2026")
    for e in events:
        value = e.SerializeToString()
        bus.publish(topics.events, value, key=e.event_id, headers=gating.headers(topics.events, e.event_id, value))
    # Whoever can write to the edge events topic: an event no gating signed.
    fake = make_event(7, 2, 1.0, now)
    bus.publish(topics.events, fake.SerializeToString(), key=fake.event_id)
    # Whoever can write to the cloud topic: an alert no uplink signed, and a signed one altered.
    forged = alert_pb2.Alert(event_id="00000000-0000-0000-0000-0000000000ff", camera_id="cam-u")
    bus.publish(topics.alerts, forged.SerializeToString(), key=forged.event_id)
    bus.flush()

    stage = build_uplink(settings, bus)
    stop = threading.Event()
    stage.start(stop)
    try:
        signed = _dead_letters(bus, topics.alerts, unique_topic("peek"), want=3)
        assert len(signed) == 3
    finally:
        stop.set()
        stage.close()
    altered = next(m for m in signed if m.headers.get("vigil-signature"))
    tampered = alert_pb2.Alert.FromString(altered.value)
    tampered.camera_id = "somewhere-else"
    bus.publish(topics.alerts, tampered.SerializeToString(), key=tampered.event_id, headers=dict(altered.headers))
    bus.flush()

    env = {**os.environ, "VIGIL_TOPICS__ALERTS": topics.alerts}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "alerts",
            "--kafka",
            tansu.bootstrap,
            "--json",
            "--idle-exit",
            "8",
            "--signing-keys",
            str(keys),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    shown = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    assert sorted(a["event_id"] for a in shown) == sorted(e.event_id for e in events)
    assert all(a["camera_id"] == "cam-u" for a in shown)
    assert f"2 record(s) without a valid signature not shown; see {topics.alerts}.dlq" in res.stderr

    dlq = _dead_letters(bus, topics.dead_letter(topics.alerts), unique_topic("dlq"), want=2)
    reasons = sorted(m.headers["vigil-error"].decode() for m in dlq)
    assert reasons[0].startswith("poison: signature of key 'edge-2026' does not match the record")
    assert reasons[1].startswith("poison: unsigned record")
    # The unsigned event never became an alert: it waits in the events topic's dead letters.
    (dead_event,) = _dead_letters(bus, topics.dead_letter(topics.events), unique_topic("edlq"), want=1)
    assert dead_event.key == fake.event_id.encode()
    assert dead_event.headers["vigil-error"].decode().startswith("poison: unsigned record")
    bus.close()


@pytest.mark.slow
def test_the_notifier_pushes_only_alerts_an_uplink_signed(
    tansu, tmp_path: Path, unique_topic: Callable[[str], str]
) -> None:
    """The notifier, built by its bootstrap with the signing keys: the signed alert reaches the webhook, the
    unsigned one is dead-lettered without a single request."""
    from services.notifier.bootstrap import build as build_notifier
    from services.notifier.config import NotifierConfig, NotifierSettings, WebhookConfig
    from tests.integration.test_notifier import SECRET, Receiver, alert

    keys = tmp_path / "signing-keys"
    keys.write_text(f"site-1 {new_signing_key()}\n")
    topics = TopicsConfig(alerts=unique_topic("alerts"))
    bus_cfg = BusConfig(kind="kafka", bootstrap=tansu.bootstrap, publish_timeout_s=15)
    bus = KafkaBus(bus_cfg)
    uplink = Signer(Keyring.load(keys), "site-1")
    signed, forged = alert("signed-1"), alert("forged-1")
    bus.publish(topics.alerts, signed, key="signed-1", headers=uplink.headers(topics.alerts, "signed-1", signed))
    bus.publish(topics.alerts, forged, key="forged-1")
    bus.flush()
    receiver = Receiver()
    settings = NotifierSettings(
        bus=bus_cfg,
        topics=topics,
        signing=SigningConfig(keys_file=keys),
        notifier=NotifierConfig(
            consumer_group=unique_topic("notifier"),
            webhooks=[WebhookConfig(name="ops", url=SecretStr(receiver.url))],
            hmac_secret=SecretStr(SECRET),
            initial_backoff_s=0.1,
        ),
    )
    stage = build_notifier(settings, bus)
    stop = threading.Event()
    stage.start(stop)
    try:
        (dead,) = _dead_letters(bus, topics.dead_letter(topics.alerts), unique_topic("dlq"), want=1)
        deadline = time.monotonic() + 60
        while "signed-1" not in receiver.accepted and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        stage.close()
        receiver.close()
        bus.close()
    assert receiver.accepted == ["signed-1"]
    assert {r["event_id"] for r in receiver.requests} == {"signed-1"}
    assert dead.key == b"forged-1" and dead.headers["vigil-error"].startswith(b"poison: unsigned record")
