"""Typed settings shared by every service; each service extends them with its own env prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TopicsConfig(BaseModel):
    """Kafka topic names. Every service reads them from here, never from literals."""

    model_config = ConfigDict(extra="forbid")

    frames: str = "vigil.frames.v1"
    events: str = "vigil.events.v1"
    alerts: str = "vigil.alerts.v1"
    evidence: str = "vigil.evidence.v1"
    # Closed clusters (IndexEntry): indexing -> memory.
    index: str = "vigil.index.v1"
    # LoRA adapter manifests: the cloud's adapter registry -> every edge gating (DAT section 3.1).
    adapters: str = "vigil.adapters.v1"
    dead_letter_suffix: str = ".dlq"

    def dead_letter(self, topic: str) -> str:
        """Name of the dead-letter topic for `topic`."""
        return topic + self.dead_letter_suffix


class BusConfig(BaseModel):
    """Which bus to use: in-process (embedded mode) or Kafka (distributed mode)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["inprocess", "kafka"] = "inprocess"
    bootstrap: str = "127.0.0.1:9092"
    # Tansu's group join takes about half the session timeout; keep it short.
    session_timeout_ms: int = Field(default=6000, ge=1000)
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # How long a publish may block while the broker is away before it raises.
    publish_timeout_s: float = Field(default=120.0, gt=0)
    # A consumer that has finished no record for this long (its handler or its flush failing on every
    # record, with back-off) raises ConsumerFailing: its service turns NOT_SERVING and exits non-zero.
    max_failing_s: float = Field(default=300.0, gt=0)
    # ... and so does one that dead-letters this many records in a row for errors other than poison.
    max_consecutive_failures: int = Field(default=20, ge=1)
    # TLS and SASL as kafka-python takes them. PLAINTEXT (the default) is for loopback and embedded runs;
    # a broker across a network wants SSL or SASL_SSL. Certificates are PEM files (mounted Secrets).
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    # The CA that signed the broker's certificate (None: the system's trust store).
    ssl_cafile: Path | None = None
    # A client certificate and key, for brokers that authenticate clients by certificate (mTLS).
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str = ""
    # The password: from the environment (a Secret's key) or a file (a mounted Secret); never logged.
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None

    @model_validator(mode="after")
    def _security_is_consistent(self) -> BusConfig:
        ssl = self.security_protocol in ("SSL", "SASL_SSL")
        sasl = self.security_protocol.startswith("SASL")
        if not ssl and any(f is not None for f in (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)):
            raise ValueError(
                f"ssl_cafile/ssl_certfile/ssl_keyfile are set but security_protocol is {self.security_protocol}: "
                "set security_protocol to SSL or SASL_SSL"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together: set both (client certificate) or neither")
        if sasl:
            if not self.sasl_username:
                raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username")
            if (self.sasl_password is None) == (self.sasl_password_file is None):
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs exactly one of sasl_password "
                    "and sasl_password_file"
                )
        return self

    def client_security(self) -> dict[str, Any]:
        """The kafka-python keyword arguments for TLS and SASL (empty for PLAINTEXT); reads the password file.

        Raises ValueError naming the setting when a file cannot be read, so a service stops at start-up
        with a message rather than looping on handshake failures.
        """
        if self.security_protocol == "PLAINTEXT":
            return {}
        out: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            for name, path in (
                ("ssl_cafile", self.ssl_cafile),
                ("ssl_certfile", self.ssl_certfile),
                ("ssl_keyfile", self.ssl_keyfile),
            ):
                if path is not None:
                    _must_read(path, f"bus.{name}")
                    out[name] = str(path)
            out["ssl_check_hostname"] = self.ssl_check_hostname
        if self.security_protocol.startswith("SASL"):
            if self.sasl_password_file is not None:
                password = _must_read(self.sasl_password_file, "bus.sasl_password_file").decode().strip()
            else:
                assert self.sasl_password is not None  # the validator asks for one of the two
                password = self.sasl_password.get_secret_value()
            out["sasl_mechanism"] = self.sasl_mechanism
            out["sasl_plain_username"] = self.sasl_username
            out["sasl_plain_password"] = password
        return out


def _must_read(path: Path, setting: str) -> bytes:
    """The bytes of a credential file; ValueError naming the setting and the reason when unreadable."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {setting} {path}: {exc.strerror or exc}") from exc


class TlsConfig(BaseModel):
    """PEM files for one side of a TLS link: this side's certificate and key, and the CA it trusts."""

    model_config = ConfigDict(extra="forbid")

    cert: Path | None = None
    key: Path | None = None
    # Server: the CA client certificates must chain to. Client: the CA of the server (None: system roots).
    ca: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls.cert and tls.key go together: set both or neither")
        return self


class GrpcServerSecurity(BaseModel):
    """Who may call a gRPC server: TLS, client certificates, bearer tokens and an allow-list per method.

    Off by default (plaintext, everyone allowed) so the embedded mode and local runs need no setup; the
    Helm charts turn it on. Identities: a bearer token's (from tokens_file), else the client
    certificate's common name (with require_client_cert), else "anonymous".
    """

    model_config = ConfigDict(extra="forbid")

    # cert + key: serve TLS instead of plaintext.
    tls: TlsConfig = TlsConfig()
    # Mutual TLS: refuse a client without a certificate signed by tls.ca.
    require_client_cert: bool = False
    # Lines "IDENTITY TOKEN" ('#' comments); a call carries "authorization: Bearer TOKEN".
    tokens_file: Path | None = None
    # Method ("Retrieve", or a full "/pkg.Service/Method") -> identities it admits; "*" is every method
    # not named. In a list, "anonymous" admits every caller, "*" every authenticated one.
    allow: dict[str, list[str]] = Field(default_factory=lambda: {"*": ["anonymous"]})
    # With TLS: a plaintext port serving only grpc.health.v1, for the kubelet's gRPC probe (it cannot
    # speak TLS). 0: none.
    health_port: int = Field(default=0, ge=0, le=65535)

    @model_validator(mode="after")
    def _consistent(self) -> GrpcServerSecurity:
        if self.require_client_cert and (self.tls.cert is None or self.tls.ca is None):
            raise ValueError("require_client_cert needs tls.cert, tls.key and tls.ca (the CA of the clients)")
        if self.health_port and self.tls.cert is None:
            raise ValueError("health_port is for TLS servers; without tls.cert the gRPC port serves health itself")
        for method, who in self.allow.items():
            if not who:
                raise ValueError(f"allow[{method!r}] is empty: list identities, or drop the method to use '*'")
        return self

    @property
    def tls_enabled(self) -> bool:
        """Whether the server speaks TLS."""
        return self.tls.cert is not None


class GrpcClientSecurity(BaseModel):
    """How a client reaches a gRPC server: TLS (with a client certificate for mTLS) and a bearer token."""

    model_config = ConfigDict(extra="forbid")

    # None: plaintext. {} (no fields): TLS trusting the system roots.
    tls: TlsConfig | None = None
    # The name the server's certificate is checked against, when the address is not it (an IP, a tunnel).
    server_name: str = ""
    # A file holding this client's token (one line).
    token_file: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> GrpcClientSecurity:
        if self.token_file is not None and self.tls is None:
            raise ValueError("token_file needs tls: a bearer token over plaintext could be read on the wire")
        return self


class SigningConfig(BaseModel):
    """HMAC-SHA256 signatures on records that cross a trust boundary (edge alerts to the cloud)."""

    model_config = ConfigDict(extra="forbid")

    # Lines "KEY_ID SECRET" ('#' comments): the signer signs with key_id; a verifier accepts any listed key,
    # so a key is rotated by adding the new one everywhere, then switching key_id, then removing the old.
    keys_file: Path | None = None
    key_id: str = ""
    # Verifier: refuse (count and dead-letter) unsigned records. With no keys_file nothing is checked.
    required: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> SigningConfig:
        if self.key_id and self.keys_file is None:
            raise ValueError("signing.key_id needs signing.keys_file")
        return self


class CommonSettings(BaseSettings):
    """Settings every service has. Env prefix VIGIL_, nested with __ (VIGIL_BUS__BOOTSTRAP)."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", env_nested_delimiter="__", extra="forbid")

    bus: BusConfig = BusConfig()
    topics: TopicsConfig = TopicsConfig()
    log_level: str = "INFO"
    log_json: bool = False
    # 0 disables the Prometheus HTTP endpoint.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # Where /metrics binds; "" = the host the service's gRPC server binds (else every interface).
    metrics_host: str = ""
    # TLS, tokens and the allow-list of this service's gRPC server (a service without one ignores it).
    grpc_security: GrpcServerSecurity = GrpcServerSecurity()
    # Signatures on alerts: the uplink signs, cloud consumers verify. Off without a keys_file.
    signing: SigningConfig = SigningConfig()

    def metrics_bind_host(self) -> str:
        """The interface /metrics listens on: metrics_host, else where gRPC binds, else every interface."""
        if self.metrics_host:
            return self.metrics_host
        # Not every service serves gRPC; those that do name it grpc_address on their own settings class.
        address = getattr(self, "grpc_address", "")
        return host_of(address) if isinstance(address, str) and address else "0.0.0.0"


def host_of(address: str) -> str:
    """The host of "host:port" ("[::1]:50051" -> "::1")."""
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Settings from the environment with `overrides` (plain dicts, e.g. CLI flags) deep-merged over them.

    Everything goes through validation together, so a bad flag fails like a bad environment value.
    """
    return cls(**overrides)
