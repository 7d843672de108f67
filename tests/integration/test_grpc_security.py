"""TLS, mutual TLS, tokens and the per-method allow-list on real gRPC servers on loopback (port 0).

The server is the adapter registry (its methods cover unary, server-streaming and client-streaming
calls), built by its own bootstrap from settings; certificates and tokens are made at test time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.adapters.bootstrap import build
from services.adapters.config import AdaptersConfig, AdaptersSettings
from services.common.bus.inprocess import InProcessBus
from services.common.config import GrpcClientSecurity, GrpcServerSecurity, TlsConfig
from services.common.grpc_runtime import ClientSecurity, open_channel
from services.common.runtime import Stage, StageError
from services.gating.adapters import GrpcBundleFetcher
from services.models.adapter_bundle import pack
from tests.fixtures.pki import Pki
from tests.fixtures.tcp_proxy import free_port
from tests.unit.test_adapter_bundle import make_adapter
from vigil.adapter.v1 import adapter_pb2, adapter_pb2_grpc

Serve = Callable[[GrpcServerSecurity], str]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Starts registries with the given security on 127.0.0.1:0; returns each one's address."""
    stages: list[tuple[Stage, threading.Event]] = []

    def start(security: GrpcServerSecurity) -> str:
        settings = AdaptersSettings(
            adapters=AdaptersConfig(dir=tmp_path / f"store{len(stages)}", public_address="registry:50054"),
            grpc_address="127.0.0.1:0",
            grpc_security=security,
        )
        stage = build(settings, InProcessBus())
        stop = threading.Event()
        stage.start(stop)
        stages.append((stage, stop))
        assert stage.endpoint is not None
        return f"127.0.0.1:{stage.endpoint.port}"

    yield start
    for stage, stop in stages:
        stop.set()
        stage.close(grace_s=0.2)


def list_call(address: str, security: GrpcClientSecurity | None, timeout: float = 5.0) -> adapter_pb2.ListResponse:
    with open_channel(address, ClientSecurity.load(security, "test")) as ch:
        reply: adapter_pb2.ListResponse = adapter_pb2_grpc.AdapterRegistryStub(ch).List(
            adapter_pb2.ListRequest(), timeout=timeout
        )
        return reply


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()  # type: ignore[no-any-return]


def test_tls_serves_tls_clients_and_refuses_plaintext(serve: Serve, pki: Pki) -> None:
    address = serve(GrpcServerSecurity(tls=pki.cert("registry")))
    assert list(list_call(address, pki.client()).manifests) == []
    # A plain insecure client gets no TLS handshake: refused before any method runs.
    assert code_of(lambda: list_call(address, None)) == grpc.StatusCode.UNAVAILABLE
    # A client trusting another CA refuses the server's certificate.
    other = Pki.create(pki.root / "other", "Other CA")
    assert code_of(lambda: list_call(address, other.client())) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_identifies_clients_by_certificate(serve: Serve, pki: Pki) -> None:
    address = serve(
        GrpcServerSecurity(
            tls=pki.cert("registry"), require_client_cert=True, allow={"List": ["edge-a"], "*": ["operator"]}
        )
    )
    assert list(list_call(address, pki.client("edge-a")).manifests) == []
    # A certificate from this CA for an identity the method does not list.
    assert code_of(lambda: list_call(address, pki.client("edge-b"))) == grpc.StatusCode.PERMISSION_DENIED
    # No client certificate, or one from another CA: the handshake fails.
    assert code_of(lambda: list_call(address, pki.client())) == grpc.StatusCode.UNAVAILABLE
    stranger = Pki.create(pki.root / "stranger", "Stranger CA")
    wrong_ca = GrpcClientSecurity(
        tls=TlsConfig(cert=stranger.cert("edge-a").cert, key=stranger.cert("edge-a").key, ca=pki.ca_file)
    )
    assert code_of(lambda: list_call(address, wrong_ca)) == grpc.StatusCode.UNAVAILABLE


def test_tokens_and_the_allow_list_per_method(serve: Serve, pki: Pki, tmp_path: Path) -> None:
    tokens_file, tokens = pki.tokens("operator", "edge-a")
    address = serve(
        GrpcServerSecurity(
            tls=pki.cert("registry"),
            tokens_file=tokens_file,
            allow={"Publish": ["operator"], "List": ["operator", "edge-a"], "Fetch": ["*"]},
        )
    )
    assert list(list_call(address, pki.client(token=tokens["edge-a"])).manifests) == []
    assert tokens["edge-a"] not in repr(ClientSecurity.load(pki.client(token=tokens["edge-a"]), "t"))
    no_token = pki.client()
    assert code_of(lambda: list_call(address, no_token)) == grpc.StatusCode.UNAUTHENTICATED
    wrong = pki.client(token="x" * 43)
    assert code_of(lambda: list_call(address, wrong)) == grpc.StatusCode.UNAUTHENTICATED

    # Client streaming (Publish): the operator may, edge-a may not.
    data = pack(make_adapter(tmp_path / "adapter"))
    chunks = [
        adapter_pb2.PublishChunk(header=adapter_pb2.PublishHeader(version="v1")),
        adapter_pb2.PublishChunk(data=data),
    ]

    def publish(security: GrpcClientSecurity) -> adapter_pb2.AdapterManifest:
        with open_channel(address, ClientSecurity.load(security, "test")) as ch:
            reply: adapter_pb2.AdapterManifest = adapter_pb2_grpc.AdapterRegistryStub(ch).Publish(
                iter(chunks), timeout=10
            )
            return reply

    with pytest.raises(grpc.RpcError) as denied:
        publish(pki.client(token=tokens["edge-a"]))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert denied.value.details() == "Publish is not allowed for 'edge-a'"
    manifest = publish(pki.client(token=tokens["operator"]))

    # Server streaming (Fetch) through the gating's own fetcher: "*" admits any token, not none.
    fetched = GrpcBundleFetcher(
        address, attempts=1, security=ClientSecurity.load(pki.client(token=tokens["edge-a"]), "t")
    )
    assert fetched(manifest) == data
    with open_channel(address, ClientSecurity.load(no_token, "t")) as ch:
        stub = adapter_pb2_grpc.AdapterRegistryStub(ch)
        with pytest.raises(grpc.RpcError) as anonymous:
            list(stub.Fetch(adapter_pb2.FetchRequest(sha256=manifest.sha256), timeout=5))
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "Fetch needs credentials" in anonymous.value.details()


def test_health_stays_open_and_has_a_plaintext_port_for_the_kubelet(serve: Serve, pki: Pki) -> None:
    tokens_file, _ = pki.tokens("operator")
    health_port = free_port()
    address = serve(
        GrpcServerSecurity(
            tls=pki.cert("registry"), tokens_file=tokens_file, allow={"*": ["operator"]}, health_port=health_port
        )
    )
    request = health_pb2.HealthCheckRequest()
    with open_channel(address, ClientSecurity.load(pki.client(), "t")) as ch:
        assert health_pb2_grpc.HealthStub(ch).Check(request, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(f"127.0.0.1:{health_port}") as ch:
        assert health_pb2_grpc.HealthStub(ch).Check(request, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        # Only health: the registry itself is not on the plaintext port.
        code = code_of(lambda: adapter_pb2_grpc.AdapterRegistryStub(ch).List(adapter_pb2.ListRequest(), timeout=5))
        assert code == grpc.StatusCode.UNIMPLEMENTED


def test_bad_certificate_files_stop_the_service_with_a_message(serve: Serve, pki: Pki, tmp_path: Path) -> None:
    good = pki.cert("registry")
    other = pki.cert("other")
    (tmp_path / "not.pem").write_text("hello")
    cases = {
        "cannot read grpc_security.tls.cert": TlsConfig(cert=tmp_path / "missing.crt", key=good.key),
        "grpc_security.tls.key .*not.pem is not a PEM private key": TlsConfig(cert=good.cert, key=tmp_path / "not.pem"),
        "the key does not belong to the certificate": TlsConfig(cert=good.cert, key=other.key),
        "cannot read grpc_security.tls.ca": TlsConfig(cert=good.cert, key=good.key, ca=tmp_path / "no-ca.crt"),
    }
    for message, tls in cases.items():
        with pytest.raises(StageError, match=message):
            serve(GrpcServerSecurity(tls=tls))
    with pytest.raises(StageError, match=r"cannot read grpc_security.tokens_file"):
        serve(GrpcServerSecurity(tls=good, tokens_file=tmp_path / "no-tokens"))


def test_what_vigil_tls_issues_serves_mutual_tls_and_tokens(serve: Serve, tmp_path: Path) -> None:
    """The README's steps: a CA, a server and a client certificate, a token, a signing key, used as issued."""
    from services.cli.main import main as vigil
    from services.common.signing import Keyring

    d = tmp_path / "issued"
    assert vigil(["tls", "ca", "--out", str(d / "ca")]) == 0
    assert vigil(["tls", "ca", "--out", str(d / "ca")]) == 2, "an existing CA is never replaced"
    assert (
        vigil(["tls", "cert", "registry", "--ca", str(d / "ca"), "--out", str(d / "server"), "--dns", "localhost"]) == 0
    )
    assert vigil(["tls", "cert", "operator", "--ca", str(d / "ca"), "--out", str(d / "operator"), "--client-only"]) == 0
    tokens = d / "server" / "tokens"
    assert vigil(["tls", "token", "edge-a", "--tokens-file", str(tokens), "--out", str(d / "edge-a.token")]) == 0
    assert vigil(["tls", "signing-key", "site-1", "--keys-file", str(d / "keys")]) == 0
    assert Keyring.load(d / "keys").ids == ["site-1"]
    assert oct((d / "server" / "tls.key").stat().st_mode & 0o777) == "0o600"
    server_tls = TlsConfig(cert=d / "server" / "tls.crt", key=d / "server" / "tls.key", ca=d / "server" / "ca.crt")
    address = serve(
        GrpcServerSecurity(
            tls=server_tls,
            require_client_cert=True,
            tokens_file=tokens,
            allow={"List": ["operator", "edge-a"], "*": ["operator"]},
        )
    )
    address = address.replace("127.0.0.1", "localhost")
    operator = GrpcClientSecurity(
        tls=TlsConfig(cert=d / "operator" / "tls.crt", key=d / "operator" / "tls.key", ca=d / "operator" / "ca.crt")
    )
    assert list(list_call(address, operator).manifests) == []
    # A token rides on top of mutual TLS: it names the caller, whatever the certificate's CN.
    with_token = operator.model_copy(update={"token_file": d / "edge-a.token"})
    assert list(list_call(address, with_token).manifests) == []
