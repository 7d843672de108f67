"""The console's link security without a broker: signed records only (in-process bus), credentials checked at
start-up with the setting named, and `vigil console`'s gRPC credential flags."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from services.cli.console import reasoning_security_flags, start_embedded_console
from services.common.bus.inprocess import InProcessBus
from services.common.config import GrpcClientSecurity, SigningConfig, TlsConfig, TopicsConfig
from services.common.pki import new_signing_key
from services.common.runtime import StageError
from services.common.signing import Keyring, Signer
from services.console.bootstrap import ConsoleStage, build
from services.console.config import ConsoleConfig, ConsoleSettings
from vigil.alert.v1 import alert_pb2

TOKEN = "unit-test-console-token-0123"


def alert(event_id: str) -> bytes:
    now = time.time_ns()
    return alert_pb2.Alert(
        event_id=event_id, camera_id="cam-u", capture_time_ns=now, created_time_ns=now, sent_time_ns=now, level=1
    ).SerializeToString()


def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.write_text(f"site-1 {new_signing_key()}\n")
    return path


def drain(stage: ConsoleStage) -> list[str]:
    """Hand every queued record to the console's handlers (no threads); the event ids now shown."""
    for consumer in stage.consumers:
        while consumer.poll(0.05):
            pass
    return sorted(a.event_id for a in stage.state.recent())


def settings(**fields: object) -> ConsoleSettings:
    console = ConsoleConfig(port=0, token=SecretStr(TOKEN))
    return ConsoleSettings(console=console, **fields)  # type: ignore[arg-type]


def test_with_signing_keys_only_signed_alerts_are_shown_and_the_rest_dead_lettered(tmp_path: Path) -> None:
    keys = keys_file(tmp_path)
    signer = Signer(Keyring.load(keys), "site-1")
    bus = InProcessBus()
    stage = build(settings(signing=SigningConfig(keys_file=keys)), bus)
    topic = TopicsConfig().alerts
    try:
        value = alert("signed")
        bus.publish(topic, value, key="signed", headers=signer.headers(topic, "signed", value))
        bus.publish(topic, alert("unsigned"), key="unsigned")
        assert drain(stage) == ["signed"]
        (dead,) = bus.messages(topic + ".dlq")
        assert dead.key == b"unsigned" and "unsigned record" in dead.headers["vigil-error"].decode()
        assert "signed records only" in stage.description
    finally:
        stage.close()


def test_without_keys_nothing_is_checked_and_the_embedded_console_needs_no_setup(tmp_path: Path) -> None:
    bus = InProcessBus()
    topics = TopicsConfig()
    stage, stop, token = start_embedded_console(bus, topics, 0, None)
    try:
        bus.publish(topics.alerts, alert("plain"), key="plain")
        deadline = time.monotonic() + 10
        while not stage.state.recent() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [a.event_id for a in stage.state.recent()] == ["plain"] and token
    finally:
        stop.set()
        stage.close(join_timeout_s=5)
    # A run whose uplink signs (its own signing settings) gets a console that verifies with the same keys.
    signed_run, stop, _ = start_embedded_console(
        InProcessBus(), topics, 0, None, SigningConfig(keys_file=keys_file(tmp_path))
    )
    try:
        assert "signed records only" in signed_run.description
    finally:
        stop.set()
        signed_run.close(join_timeout_s=5)


def test_unreadable_credentials_stop_the_start_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"signing\.keys_file"):
        build(settings(signing=SigningConfig(keys_file=tmp_path / "missing")), InProcessBus())
    ca = tmp_path / "ca.crt"
    ca.write_text("not a certificate")
    console = ConsoleConfig(
        port=0,
        token=SecretStr(TOKEN),
        reasoning_address="127.0.0.1:1",
        reasoning_security=GrpcClientSecurity(tls=TlsConfig(ca=ca)),
    )
    with pytest.raises(StageError, match=r"console\.reasoning_security\.tls\.ca .* is not a PEM"):
        build(ConsoleSettings(console=console), InProcessBus())
    # A token over plaintext is refused by the settings themselves.
    with pytest.raises(ValidationError, match="token_file needs tls"):
        ConsoleConfig(reasoning_security=GrpcClientSecurity(token_file=tmp_path / "token"))


def test_console_flags_become_reasoning_security(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    none = argparse.Namespace(tls=False, ca=None, cert=None, key=None, token_file=None, server_name="")
    assert reasoning_security_flags(none) is None
    given = argparse.Namespace(
        tls=False, ca=tmp_path / "ca.crt", cert=None, key=None, token_file=tmp_path / "t", server_name="r.svc"
    )
    flags = reasoning_security_flags(given)
    assert flags == {"tls": {"ca": str(tmp_path / "ca.crt")}, "server_name": "r.svc", "token_file": str(tmp_path / "t")}
    # The same shape the chart renders into VIGIL_CONSOLE__REASONING_SECURITY.
    monkeypatch.setenv("VIGIL_CONSOLE__REASONING_SECURITY", json.dumps(flags))
    loaded = ConsoleSettings().console.reasoning_security
    assert loaded is not None and loaded.tls is not None and loaded.tls.ca == tmp_path / "ca.crt"
