"""The charts' security as rendered: every gRPC server behind TLS and an allow-list, and a client without
credentials refused by a server built from exactly the settings the chart renders.

grpcurl is not installable here, so the "client without credentials" is a plain insecure Python gRPC
client (what `grpcurl -plaintext` does), then a TLS client without a token, with another identity's
token, and with the operator's: each against reasoning built by its own bootstrap from the rendered
environment, with the chart's default Secrets made at test time and mounted where the pod mounts them.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.main import main as vigil
from services.common.bus.inprocess import InProcessBus
from services.common.grpc_runtime import ClientSecurity, open_channel
from services.common.memory_api import MemoryUnavailable
from services.console.backends import GrpcAsker
from services.console.bootstrap import build as build_console
from services.console.config import ConsoleSettings
from services.reasoning.bootstrap import build
from services.reasoning.config import ReasoningSettings
from tests.fixtures.k8s_secrets import ChartSecrets
from tests.fixtures.tcp_proxy import free_port
from tests.integration import test_helm
from tests.integration.test_helm import (
    CLOUD_MIN,
    CLOUD_REASONING,
    EDGE_MIN,
    Render,
    _pod,
    _remount,
    _remount_json,
    container_env,
    load_settings,
    merged,
)
from vigil.reasoning.v1 import reasoning_pb2, reasoning_pb2_grpc

# The chart-rendering fixtures of test_helm (helm from its PyPI wheel, the charts staged once per module).
helm, charts, render_chart = test_helm.helm, test_helm.charts, test_helm.render_chart


@pytest.mark.parametrize(
    ("chart", "values", "deployment", "method"),
    [
        ("edge", EDGE_MIN, "edge-gating", "Detect"),
        ("edge", EDGE_MIN, "edge-memory", "Retrieve"),
        ("cloud", CLOUD_REASONING, "cloud-reasoning", "Ask"),
        (
            "cloud",
            merged(CLOUD_MIN, {"adapterRegistry": {"enabled": True, "publicAddress": "a.example.com:443"}}),
            "cloud-adapter-registry",
            "Publish",
        ),
    ],
)
def test_every_grpc_server_renders_tls_tokens_and_an_allow_list_without_anonymous(
    render_chart: Render,
    monkeypatch: pytest.MonkeyPatch,
    chart: str,
    values: dict[str, Any],
    deployment: str,
    method: str,
) -> None:
    objects = render_chart(chart, values)
    spec, c = _pod(objects, deployment)
    env = container_env(objects, c)
    settings = load_settings(c["args"][2], env, monkeypatch)
    security = settings.grpc_security  # type: ignore[attr-defined]
    assert security.tls_enabled and security.tokens_file is not None
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/etc/vigil/grpc-tls", "/etc/vigil/grpc-tokens"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["grpc-tls"]["secret"]["secretName"] == "vigil-grpc-tls"
    # Retrieve (raw camera frames), Ask, Detect, Publish: never anonymous, and neither is any other method.
    for who in security.allow.values():
        assert "anonymous" not in who
    assert security.allow.get(method, security.allow["*"])
    # The kubelet probes the plaintext health-only port.
    assert c["readinessProbe"]["grpc"]["port"] == security.health_port == 8086


def test_turning_security_off_renders_plaintext_and_a_missing_secret_name_fails(render_chart: Render) -> None:
    objects = render_chart(
        "edge", merged(EDGE_MIN, {"grpcSecurity": {"enabled": False}, "signing": {"enabled": False}})
    )
    _, gating = _pod(objects, "edge-gating")
    env = container_env(objects, gating)
    assert not any(k.startswith("VIGIL_GRPC_SECURITY__") for k in env)
    assert gating["readinessProbe"]["grpc"]["port"] == 50051
    _, uplink = _pod(objects, "edge-uplink")
    assert not any(k.startswith("VIGIL_SIGNING__") for k in container_env(objects, uplink))
    with pytest.raises(Exception, match="tlsSecret"):
        render_chart("edge", merged(EDGE_MIN, {"grpcSecurity": {"tlsSecret": ""}}))
    with pytest.raises(Exception, match=r"signing\.keyId is required"):
        render_chart("edge", merged(EDGE_MIN, {"signing": {"keyId": ""}}))


def test_cert_manager_issues_the_tls_secret_for_the_releases_services(render_chart: Render) -> None:
    values = merged(
        CLOUD_REASONING,
        {
            "grpcSecurity": {
                "certManager": {"enabled": True, "issuerRef": {"name": "vigil-ca", "kind": "ClusterIssuer"}}
            }
        },
    )
    (cert,) = [o for o in render_chart("cloud", values) if o["kind"] == "Certificate"]
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert cert["spec"]["secretName"] == "vigil-grpc-tls"
    assert cert["spec"]["issuerRef"] == {"name": "vigil-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert "cloud-reasoning.vigil-cloud.svc" in cert["spec"]["dnsNames"]
    assert not [o for o in render_chart("cloud", CLOUD_REASONING) if o["kind"] == "Certificate"], "off by default"


def _mount_secrets(objects: list[dict[str, Any]], deployment: str, secrets: ChartSecrets, root: Path) -> dict[str, str]:
    """The container's environment with each mounted Secret written to a local folder and its paths remapped."""
    spec, c = _pod(objects, deployment)
    env = container_env(objects, c)
    for mount in c["volumeMounts"]:
        if mount["mountPath"] == "/tmp":
            continue
        local = root / mount["name"]
        local.mkdir(parents=True)
        secrets.fill(spec, mount, local)
        env = {
            k: _remount_json(_remount(v, mount["mountPath"], local), mount["mountPath"], local) for k, v in env.items()
        }
    return env


def test_a_client_without_credentials_is_refused_by_the_rendered_reasoning(
    render_chart: Render, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    memory_port, health_port = free_port(), free_port()  # nothing listens on the memory port
    values = merged(
        CLOUD_REASONING,
        {"reasoning": {"memoryAddress": f"127.0.0.1:{memory_port}"}, "grpcSecurity": {"healthPort": health_port}},
    )
    secrets = ChartSecrets(tmp_path / "secrets")
    env = _mount_secrets(render_chart("cloud", values), "cloud-reasoning", secrets, tmp_path / "mounts")
    # The rendered 0.0.0.0:50053 becomes a free loopback port; every other setting is the chart's.
    env["VIGIL_GRPC_ADDRESS"] = "127.0.0.1:0"
    settings = load_settings("services.reasoning", env, monkeypatch)
    assert isinstance(settings, ReasoningSettings) and settings.reasoning.memory_security is not None
    stage = build(settings)
    stop = threading.Event()
    stage.start(stop)
    assert stage.endpoint is not None
    address = f"localhost:{stage.endpoint.port}"
    request = reasoning_pb2.AskRequest(question="a person at the door?")

    def ask(channel: grpc.Channel) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as err:
            reasoning_pb2_grpc.ReasoningServiceStub(channel).Ask(request, timeout=10)
        return err.value.code()  # type: ignore[no-any-return]

    try:
        # What grpcurl -plaintext would do: no TLS, no token. The TLS port does not answer it.
        with grpc.insecure_channel(address) as plain:
            assert ask(plain) == grpc.StatusCode.UNAVAILABLE
        # TLS but no token: refused by the allow-list before any work.
        with open_channel(address, ClientSecurity.load(secrets.client(None), "t")) as ch:
            assert ask(ch) == grpc.StatusCode.UNAUTHENTICATED
        # The reasoning service's own identity may Retrieve at the edge, not Ask here.
        with open_channel(address, ClientSecurity.load(secrets.client("reasoning"), "t")) as ch:
            assert ask(ch) == grpc.StatusCode.PERMISSION_DENIED
        # The operator is admitted: the call gets as far as the (absent) edge memory.
        with open_channel(address, ClientSecurity.load(secrets.client("operator"), "t")) as ch:
            with pytest.raises(grpc.RpcError) as admitted:
                reasoning_pb2_grpc.ReasoningServiceStub(ch).Ask(request, timeout=10)
            assert admitted.value.code() == grpc.StatusCode.UNAVAILABLE
            assert f"edge memory at 127.0.0.1:{memory_port}" in admitted.value.details()
        # The kubelet's probe: plaintext, health only.
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # `vigil ask --reasoning` with the operator's CA and token, and without a token.
        token = secrets.root / "operator.token"
        ca = str(secrets.pki.ca_file)
        assert (
            vigil(["ask", "a person?", "--reasoning", address, "--ca", ca, "--token-file", str(token), "--json"]) == 3
        )
        assert f"edge memory at 127.0.0.1:{memory_port}" in capsys.readouterr().err
        assert vigil(["ask", "a person?", "--reasoning", address, "--ca", ca]) == 3
        assert "UNAUTHENTICATED: Ask needs credentials" in capsys.readouterr().err
    finally:
        stop.set()
        stage.close(grace_s=0.2)
    assert json.loads(settings.model_dump_json())["grpc_security"]["allow"] == {"*": ["operator", "console"]}


def test_kafka_credentials_and_mutual_tls_come_from_secrets(
    render_chart: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render_chart("edge", test_helm.REPO / "helm" / "edge" / "ci" / "tls-values.yaml")
    for name in ("edge-ingest-lobby", "edge-gating", "edge-indexing", "edge-memory", "edge-uplink"):
        _, c = _pod(objects, name)
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert mounts["/etc/vigil/kafka"] == "kafka", name
        assert mounts["/etc/vigil/cloud-kafka"] == "cloud-kafka", name
        settings = load_settings(c["args"][2], container_env(objects, c), monkeypatch)
        bus = settings.bus  # type: ignore[attr-defined]
        assert bus.security_protocol == "SSL" and str(bus.ssl_cafile) == "/etc/vigil/kafka/ca.crt"
        assert (
            str(bus.ssl_certfile) == "/etc/vigil/kafka/tls.crt" and str(bus.ssl_keyfile) == "/etc/vigil/kafka/tls.key"
        )
    volumes = {v["name"]: v for v in _pod(objects, "edge-uplink")[0]["volumes"]}
    assert volumes["cloud-kafka"]["projected"]["sources"] == [
        {"secret": {"name": "kafka-cloud-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"secret": {"name": "kafka-cloud-sasl", "items": [{"key": "password", "path": "sasl-password"}]}},
    ]
    _, uplink = _pod(objects, "edge-uplink")
    settings = load_settings("services.uplink", container_env(objects, uplink), monkeypatch)
    cloud = settings.uplink.cloud_bus  # type: ignore[attr-defined]
    assert (cloud.security_protocol, cloud.sasl_mechanism, cloud.sasl_username) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "site-a",
    )
    assert str(cloud.sasl_password_file) == "/etc/vigil/cloud-kafka/sasl-password" and cloud.sasl_password is None
    assert settings.signing.key_id == "site-a-2026"  # type: ignore[attr-defined]
    _, memory = _pod(objects, "edge-memory")
    security = load_settings("services.memory", container_env(objects, memory), monkeypatch).grpc_security  # type: ignore[attr-defined]
    assert security.require_client_cert and str(security.tls.ca) == "/etc/vigil/grpc-tls/ca.crt"
    assert security.tokens_file is None


def test_gating_and_the_uplink_sign_with_the_sites_key_and_the_alert_log_verifies(
    render_chart: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    edge = render_chart("edge", EDGE_MIN)
    for name in ("edge-gating", "edge-uplink"):
        spec, c = _pod(edge, name)
        settings = load_settings(c["args"][2], container_env(edge, c), monkeypatch)
        assert settings.signing.key_id == "site-1" and str(settings.signing.keys_file) == "/etc/vigil/signing/keys"  # type: ignore[attr-defined]
        assert {v["name"]: v for v in spec["volumes"]}["signing"]["secret"]["secretName"] == "vigil-signing-keys"
    cloud = render_chart("cloud", merged(CLOUD_MIN, {"alertsLog": {"enabled": True}}))
    _, log = _pod(cloud, "cloud-alerts-log")
    assert container_env(cloud, log)["VIGIL_SIGNING__KEYS_FILE"] == "/etc/vigil/signing/keys"


def test_the_rendered_console_asks_the_rendered_reasoning_over_tls_with_its_own_token(
    render_chart: Render, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    memory_port, health_port = free_port(), free_port()  # nothing listens on the memory port
    values = merged(
        CLOUD_REASONING,
        {
            "reasoning": {"memoryAddress": f"127.0.0.1:{memory_port}"},
            "grpcSecurity": {"healthPort": health_port},
            "console": {"enabled": True, "auth": {"existingSecret": "vigil-console"}},
        },
    )
    objects = render_chart("cloud", values)
    secrets = ChartSecrets(tmp_path / "secrets")
    served = _mount_secrets(objects, "cloud-reasoning", secrets, tmp_path / "reasoning")
    served["VIGIL_GRPC_ADDRESS"] = "127.0.0.1:0"
    reasoning = build(load_settings("services.reasoning", served, monkeypatch))  # type: ignore[arg-type]
    stop = threading.Event()
    reasoning.start(stop)
    assert reasoning.endpoint is not None
    env = _mount_secrets(objects, "cloud-console", secrets, tmp_path / "console")
    # Every credential setting is the chart's; only the addresses are this machine's (the certificate names
    # localhost), the bus is in-process and the memory probe is left out (no edge memory here).
    env |= {
        "VIGIL_CONSOLE__REASONING_ADDRESS": f"localhost:{reasoning.endpoint.port}",
        "VIGIL_CONSOLE__HOST": "127.0.0.1",
        "VIGIL_CONSOLE__PORT": "0",
        "VIGIL_CONSOLE__TOKEN": "console-page-token-0123456789",
        "VIGIL_CONSOLE__HEALTH_INTERVAL_S": "0.5",
        "VIGIL_BUS__KIND": "inprocess",
    }
    for key in ("VIGIL_CONSOLE__MEMORY_ADDRESS", "VIGIL_CONSOLE__MEMORY_SECURITY"):
        env.pop(key)
    settings = load_settings("services.console", env, monkeypatch)
    assert isinstance(settings, ConsoleSettings)
    assert settings.console.reasoning_security is not None and settings.signing.keys_file is not None
    console = build_console(settings, InProcessBus())
    console.start(stop, serve=False)
    try:
        client = httpx.Client(
            base_url=console.url(), headers={"Authorization": "Bearer console-page-token-0123456789"}, timeout=30
        )
        # Admitted by reasoning's allow-list as "console": the question gets as far as the (absent) edge memory.
        answer = client.post("/ask", data={"question": "a person at the door?"})
        assert answer.status_code == 503, answer.text
        assert f"edge memory at 127.0.0.1:{memory_port}" in answer.text
        assert "PERMISSION_DENIED" not in answer.text and "UNAUTHENTICATED" not in answer.text
        # The health probe speaks TLS too (the TLS port does not answer plaintext).
        deadline = time.monotonic() + 20
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            health = {h["name"]: h for h in client.get("/api/health").json()}
            if health["reasoning"]["ok"]:
                break
            time.sleep(0.3)
        assert health["reasoning"]["ok"] and "(TLS)" in health["reasoning"]["detail"], health
        # The console's Ask path with another identity's token, or none, is turned away before any work.
        address = f"localhost:{reasoning.endpoint.port}"
        for identity, code in (("reasoning", "PERMISSION_DENIED"), (None, "UNAUTHENTICATED")):
            asker = GrpcAsker(address, ClientSecurity.load(secrets.client(identity), "t"))
            try:
                with pytest.raises(MemoryUnavailable, match=code):
                    asker(reasoning_pb2.AskRequest(question="a person?"), 10.0)
            finally:
                asker.close()
    finally:
        stop.set()
        console.close(join_timeout_s=10)
        reasoning.close(grace_s=0.2)
