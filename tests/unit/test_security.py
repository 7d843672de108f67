"""Pure parts of the link security: token files, allow-lists, alert signatures, the settings' checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.common.auth import AllowList, CredentialsError, TokenTable, read_token
from services.common.bus import Message, PoisonMessage
from services.common.config import BusConfig, CommonSettings, GrpcClientSecurity, GrpcServerSecurity, TlsConfig
from services.common.signing import SIGNATURE_HEADER, BadSignature, Keyring, Signer, Verifier
from services.gating.config import GatingSettings
from services.ingest.config import IngestSettings

TOKEN_A = "a" * 20 + "tokenA"
TOKEN_B = "b" * 20 + "tokenB"


def test_tokens_file_maps_tokens_to_identities() -> None:
    table = TokenTable.parse(f"# who may call\nreasoning {TOKEN_A}\n\noperator  {TOKEN_B}\n")
    assert table.identify(TOKEN_A) == "reasoning"
    assert table.identify(TOKEN_B) == "operator"
    assert table.identify(TOKEN_A + "x") is None
    assert table.identify("") is None
    assert sorted(table.identities) == ["operator", "reasoning"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f"reasoning {TOKEN_A} extra", "line 1: expected 'IDENTITY TOKEN'"),
        ("reasoning short", "shorter than 16 characters"),
        (f"anonymous {TOKEN_A}", "'anonymous' is reserved"),
        (f"a {TOKEN_A}\nb {TOKEN_A}", "line 2: 'b' has the same token as 'a'"),
    ],
)
def test_a_bad_tokens_file_names_the_line_never_the_token(text: str, says: str) -> None:
    with pytest.raises(CredentialsError) as err:
        TokenTable.parse(text)
    assert says in str(err.value)
    assert TOKEN_A not in str(err.value)


def test_token_files_that_cannot_be_read_or_are_empty_say_which_setting(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match=r"cannot read grpc_security.tokens_file .*missing"):
        TokenTable.load(tmp_path / "missing", "grpc_security.tokens_file")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(CredentialsError, match="holds no tokens"):
        TokenTable.load(tmp_path / "empty", "grpc_security.tokens_file")
    (tmp_path / "client").write_text("two words\n")
    with pytest.raises(CredentialsError, match="exactly one token"):
        read_token(tmp_path / "client", "token_file")
    (tmp_path / "client").write_text(f"\n{TOKEN_A}\n")
    assert read_token(tmp_path / "client", "token_file") == TOKEN_A


def test_allow_list_per_method_with_anonymous_and_any_identity() -> None:
    allow = AllowList({"Retrieve": ["reasoning"], "Describe": ["*"], "*": ["operator"]})
    retrieve = "/vigil.memory.v1.MemoryService/Retrieve"
    assert allow.admits(retrieve, "reasoning")
    assert not allow.admits(retrieve, "operator")
    assert not allow.admits(retrieve, "anonymous")
    assert allow.admits("/vigil.memory.v1.MemoryService/Describe", "edge")
    assert not allow.admits("/vigil.memory.v1.MemoryService/Describe", "anonymous")
    # Methods not named fall to "*"; reflection is one of them.
    assert allow.admits("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "operator")
    assert not allow.admits("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "reasoning")
    # Health is always open: the kubelet's probe carries no credentials.
    assert allow.admits("/grpc.health.v1.Health/Check", "anonymous")
    # A full path wins over the short name.
    full = AllowList({retrieve: ["a"], "Retrieve": ["b"]})
    assert full.admits(retrieve, "a") and not full.admits(retrieve, "b")
    # Nothing listed and no "*": nobody.
    assert not AllowList({"Ask": ["operator"]}).admits("/x.Y/Other", "operator")


def test_the_default_allow_list_is_open_and_a_named_one_is_not() -> None:
    assert AllowList(GrpcServerSecurity().allow).open
    assert not AllowList({"*": ["anonymous"], "Retrieve": ["reasoning"]}).open


def test_server_and_client_security_settings_refuse_what_cannot_work(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"tls.cert and tls.key go together"):
        TlsConfig(cert=tmp_path / "c")
    with pytest.raises(ValidationError, match=r"require_client_cert needs tls.cert, tls.key and tls.ca"):
        GrpcServerSecurity(tls=TlsConfig(cert=tmp_path / "c", key=tmp_path / "k"), require_client_cert=True)
    with pytest.raises(ValidationError, match="allow\\['Ask'\\] is empty"):
        GrpcServerSecurity(allow={"Ask": []})
    with pytest.raises(ValidationError, match="health_port is for TLS servers"):
        GrpcServerSecurity(health_port=8086)
    with pytest.raises(ValidationError, match="a bearer token over plaintext"):
        GrpcClientSecurity(token_file=tmp_path / "t")


def test_settings_read_security_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_GRPC_SECURITY__TLS__CERT", "/tls/tls.crt")
    monkeypatch.setenv("VIGIL_GRPC_SECURITY__TLS__KEY", "/tls/tls.key")
    monkeypatch.setenv("VIGIL_GRPC_SECURITY__ALLOW", '{"Detect": ["operator"]}')
    monkeypatch.setenv("VIGIL_BUS__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("VIGIL_BUS__SASL_USERNAME", "edge")
    monkeypatch.setenv("VIGIL_BUS__SASL_PASSWORD", "s3cret-password")
    monkeypatch.setenv("VIGIL_BUS__SASL_MECHANISM", "SCRAM-SHA-512")
    s = GatingSettings()
    assert s.grpc_security.tls_enabled and s.grpc_security.allow == {"Detect": ["operator"]}
    assert s.bus.client_security() == {
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "edge",
        "sasl_plain_password": "s3cret-password",
    }
    # The password never shows in the settings' repr (logged at start-up by some services).
    assert "s3cret-password" not in repr(s)


def test_metrics_bind_where_grpc_binds_unless_set() -> None:
    assert GatingSettings(grpc_address="127.0.0.1:50051").metrics_bind_host() == "127.0.0.1"
    assert GatingSettings(grpc_address="[::1]:50051").metrics_bind_host() == "::1"
    assert GatingSettings(grpc_address="127.0.0.1:50051", metrics_host="0.0.0.0").metrics_bind_host() == "0.0.0.0"
    # A service without a gRPC server keeps binding every interface (its probes reach /metrics on the pod IP).
    assert IngestSettings().metrics_bind_host() == "0.0.0.0"
    assert CommonSettings(metrics_host="10.0.0.5").metrics_bind_host() == "10.0.0.5"


def test_kafka_security_settings_are_checked_together(tmp_path: Path) -> None:
    assert BusConfig().client_security() == {}
    with pytest.raises(ValidationError, match="set security_protocol to SSL or SASL_SSL"):
        BusConfig(ssl_cafile=tmp_path / "ca.crt")
    with pytest.raises(ValidationError, match="ssl_certfile and ssl_keyfile go together"):
        BusConfig(security_protocol="SSL", ssl_certfile=tmp_path / "c")
    with pytest.raises(ValidationError, match="needs sasl_username"):
        BusConfig(security_protocol="SASL_PLAINTEXT")
    with pytest.raises(ValidationError, match="exactly one of sasl_password and sasl_password_file"):
        BusConfig(security_protocol="SASL_PLAINTEXT", sasl_username="u")
    with pytest.raises(ValueError, match=r"cannot read bus.ssl_cafile .*ca.crt"):
        BusConfig(security_protocol="SSL", ssl_cafile=tmp_path / "ca.crt").client_security()
    (tmp_path / "password").write_text("pw-from-a-secret\n")
    sasl = BusConfig(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password_file=tmp_path / "password")
    assert sasl.client_security()["sasl_plain_password"] == "pw-from-a-secret"
    assert "ssl_cafile" not in sasl.client_security()


def _msg(topic: str, value: bytes, headers: dict[str, bytes], key: bytes | None = b"e1") -> Message:
    return Message(topic, 0, 0, key, value, headers)


def test_a_signed_record_verifies_and_any_change_is_refused() -> None:
    keys = Keyring.parse("# edge alerts\nk1 " + "1" * 32 + "\nk2 " + "2" * 32 + "\n")
    signer, verifier = Signer(keys, "k1"), Verifier(keys)
    value = b"alert-bytes"
    headers = {k: v.encode() for k, v in signer.headers("vigil.alerts.v1", "e1", value).items()}
    assert headers[SIGNATURE_HEADER].startswith(b"v1:k1:")
    assert verifier.verify(_msg("vigil.alerts.v1", value, headers)) == "k1"
    cases = {
        "forged": _msg("vigil.alerts.v1", b"alert-bytez", headers),
        # Evidence signed for its own topic cannot be replayed as an alert, nor a key swapped.
        "forged-topic": _msg("vigil.evidence.v1", value, headers),
        "forged-key": _msg("vigil.alerts.v1", value, headers, key=b"e2"),
        "unsigned": _msg("vigil.alerts.v1", value, {}),
        "unknown_key": _msg("vigil.alerts.v1", value, {SIGNATURE_HEADER: b"v1:k9:" + b"0" * 64}),
        "malformed": _msg("vigil.alerts.v1", value, {SIGNATURE_HEADER: b"hmac"}),
    }
    for name, msg in cases.items():
        with pytest.raises(BadSignature) as err:
            verifier.verify(msg)
        assert err.value.reason == name.split("-")[0], name
        # A PoisonMessage: the bus dead-letters it instead of retrying.
        assert isinstance(err.value, PoisonMessage)
    handled: list[Message] = []
    wrapped = verifier.wrap(handled.append)
    wrapped(_msg("vigil.alerts.v1", value, headers))
    with pytest.raises(BadSignature):
        wrapped(cases["unsigned"])
    assert len(handled) == 1


def test_keys_files_are_checked_and_name_the_line() -> None:
    with pytest.raises(CredentialsError, match="line 1: key 'k1' is shorter than 16 bytes"):
        Keyring.parse("k1 short")
    with pytest.raises(CredentialsError, match="line 2: key id 'k1' appears twice"):
        Keyring.parse("k1 " + "1" * 32 + "\nk1 " + "2" * 32)
    with pytest.raises(CredentialsError, match="holds no keys"):
        Keyring.parse("# empty")
    with pytest.raises(CredentialsError, match=r"signing.key_id 'k2' is not in the keys file"):
        Signer(Keyring.parse("k1 " + "1" * 32), "k2")
