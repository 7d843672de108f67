"""gRPC runtime: servers (health, reflection, admission control, TLS and caller authentication), client channels.

(services/common/runtime.py starts and stops the server.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter

from services.common.auth import ANONYMOUS, AllowList, CredentialsError, TokenTable, read_token
from services.common.config import GrpcClientSecurity, GrpcServerSecurity, TlsConfig

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024

CALLS_REJECTED = Counter(
    "vigil_grpc_calls_rejected_total",
    "Calls turned away before they started: unauthenticated or not allowed, over the method's concurrency "
    "limit, or past their deadline",
    ["method", "reason"],
)


class CallLimit:
    """One method's admission: at most `limit` calls in flight; the next one is refused at once, not queued."""

    def __init__(self, limit: int, setting: str) -> None:
        if limit < 1:
            raise ValueError(f"a call limit must be >= 1, got {limit}")
        self.limit = limit
        # The settings key a person raises, named in the refusal.
        self.setting = setting
        self._slots = threading.BoundedSemaphore(limit)

    def try_acquire(self) -> bool:
        """Take a slot if one is free (never waits)."""
        return self._slots.acquire(blocking=False)

    def release(self) -> None:
        """Give the slot back."""
        self._slots.release()


class AdmissionInterceptor(grpc.ServerInterceptor):
    """Applies each limited method's CallLimit, and refuses a call whose deadline passed before it started.

    A server whose workers are all busy queues new calls without bound and answers them late (200 parallel
    Detects reached p95 38 s); turning the excess away with RESOURCE_EXHAUSTED lets the client back off.
    """

    def __init__(self, limits: Mapping[str, CallLimit]) -> None:
        self._limits = dict(limits)

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        """Wrap the unary handler of a limited method; every other method passes through untouched."""
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        limit = self._limits.get(method)
        if handler is None or limit is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        name = method.rsplit("/", 1)[-1]

        def admitted(request: Any, context: grpc.ServicerContext) -> Any:
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                CALLS_REJECTED.labels(name, "deadline").inc()
                abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, f"{name}: the call's deadline passed before it ran")
            if not limit.try_acquire():
                CALLS_REJECTED.labels(name, "busy").inc()
                abort(
                    context,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{name} is already serving its limit of {limit.limit} concurrent calls ({limit.setting}): "
                    "retry with backoff",
                )
            try:
                return inner(request, context)
            finally:
                limit.release()

        return grpc.unary_unary_rpc_method_handler(
            admitted,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def read_pem(path: Path, setting: str, kind: str = "CERTIFICATE") -> bytes:
    """A PEM file's bytes; CredentialsError naming the setting when it is missing, unreadable or not PEM."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CredentialsError(f"cannot read {setting} {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN" not in data or (kind == "CERTIFICATE" and b"CERTIFICATE-----" not in data):
        raise CredentialsError(f"{setting} {path} is not a PEM {kind.lower()} (no '-----BEGIN' block)")
    return data


def _check_key_matches(cert: bytes, key: bytes, where: str) -> None:
    """CredentialsError when the key is not the certificate's: gRPC would only fail later, at the first handshake."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        public = x509.load_pem_x509_certificate(cert).public_key()
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise CredentialsError(f"{where}: cannot load the certificate or key: {exc}") from exc
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if public.public_bytes(*fmt) != private.public_key().public_bytes(*fmt):
        raise CredentialsError(f"{where}: the key does not belong to the certificate (a cert and key from two issues?)")


def _tls_pair(tls: TlsConfig, setting: str) -> tuple[bytes, bytes]:
    assert tls.cert is not None and tls.key is not None
    cert = read_pem(tls.cert, f"{setting}.cert")
    key = read_pem(tls.key, f"{setting}.key", "PRIVATE KEY")
    _check_key_matches(cert, key, f"{setting}.cert/{setting}.key ({tls.cert}, {tls.key})")
    return cert, key


@dataclass(frozen=True)
class ServerSecurity:
    """A server's security, loaded and checked once at start-up: credentials, tokens, allow-list."""

    credentials: grpc.ServerCredentials | None = None
    tokens: TokenTable | None = None
    allow: AllowList = field(default_factory=lambda: AllowList({"*": [ANONYMOUS]}))
    mutual: bool = False
    health_port: int = 0

    @classmethod
    def load(cls, cfg: GrpcServerSecurity, setting: str = "grpc_security") -> ServerSecurity:
        """Read the files `cfg` names; CredentialsError (a message a person can act on) when one is wrong."""
        credentials = None
        if cfg.tls_enabled:
            cert, key = _tls_pair(cfg.tls, f"{setting}.tls")
            ca = read_pem(cfg.tls.ca, f"{setting}.tls.ca") if cfg.tls.ca is not None else None
            credentials = grpc.ssl_server_credentials(
                [(key, cert)], root_certificates=ca, require_client_auth=cfg.require_client_cert
            )
        tokens = TokenTable.load(cfg.tokens_file, f"{setting}.tokens_file") if cfg.tokens_file is not None else None
        if tokens is not None and credentials is None:
            log.warning("%s.tokens_file is set without TLS: tokens cross the network in the clear", setting)
        allow = AllowList(cfg.allow)
        if not allow.open and tokens is None and not cfg.require_client_cert:
            log.warning("%s.allow names identities, but neither tokens nor client certificates can prove one", setting)
        return cls(credentials, tokens, allow, cfg.require_client_cert, cfg.health_port)

    @property
    def checks_callers(self) -> bool:
        """Whether any call can be refused for who makes it."""
        return not self.allow.open or self.tokens is not None


def caller_identity(
    metadata: Sequence[tuple[str, Any]] | None, context: grpc.ServicerContext, security: ServerSecurity
) -> str:
    """The caller's identity: its bearer token's, else its verified client certificate's CN, else anonymous.

    Raises _Refused(UNAUTHENTICATED) for a token that is malformed or unknown (a wrong token is never
    treated as no token).
    """
    for key, value in metadata or ():
        if key != "authorization":
            continue
        text = value.decode() if isinstance(value, bytes) else str(value)
        scheme, _, token = text.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Refused(grpc.StatusCode.UNAUTHENTICATED, "the authorization metadata must be 'Bearer TOKEN'")
        identity = security.tokens.identify(token.strip()) if security.tokens is not None else None
        if identity is None:
            raise _Refused(grpc.StatusCode.UNAUTHENTICATED, "unknown token: ask the operator for a valid one")
        return identity
    if security.mutual:
        # Present only when the TLS handshake verified the client's certificate against tls.ca.
        names = context.auth_context().get("x509_common_name") or []
        if names:
            name = names[0]
            return name.decode() if isinstance(name, bytes) else str(name)
    return ANONYMOUS


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AuthInterceptor(grpc.ServerInterceptor):
    """Identifies every caller (token, client certificate, or anonymous) and applies the allow-list per method.

    Runs before admission, so a refused caller never takes one of a method's concurrency slots. The
    token is never logged; a refusal names the method and identity, not the credential.
    """

    def __init__(self, security: ServerSecurity) -> None:
        self._security = security

    def _check(self, method: str, metadata: Any, context: grpc.ServicerContext) -> None:
        name = method.rsplit("/", 1)[-1]
        try:
            identity = caller_identity(metadata, context, self._security)
        except _Refused as refused:
            CALLS_REJECTED.labels(name, "unauthenticated").inc()
            abort(context, refused.code, f"{name}: {refused.message}")
        if not self._security.allow.admits(method, identity):
            CALLS_REJECTED.labels(name, "forbidden").inc()
            if identity == ANONYMOUS:
                abort(
                    context,
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"{name} needs credentials: a bearer token or a client certificate",
                )
            abort(context, grpc.StatusCode.PERMISSION_DENIED, f"{name} is not allowed for {identity!r}")

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        """Wrap every handler (unary or streaming) in the check; health checks pass through."""
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith("/grpc.health.v1.Health/"):
            return handler
        metadata = handler_call_details.invocation_metadata
        check = self._check
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                check(method, metadata, context)
                return inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                check(method, metadata, context)
                yield from inner_us(request, context)

            return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
        if handler.stream_unary is not None:
            inner_su = handler.stream_unary

            def stream_unary(requests: Any, context: grpc.ServicerContext) -> Any:
                check(method, metadata, context)
                return inner_su(requests, context)

            return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
        inner_ss = handler.stream_stream

        def stream_stream(requests: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            check(method, metadata, context)
            yield from inner_ss(requests, context)

        return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)


class _WithHealthPort(grpc.Server):
    """The service's TLS server plus a plaintext server on another port that serves grpc.health.v1 only.

    The kubelet's gRPC probe cannot speak TLS; a second server (not a second port of the first) keeps
    every other service off plaintext.
    """

    def __init__(self, main: grpc.Server, health_server: grpc.Server) -> None:
        self._main = main
        self._health = health_server

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Any) -> None:
        """Delegates to the service's server."""
        self._main.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name: Any, method_handlers: Any) -> None:
        """Delegates to the service's server."""
        self._main.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        """Delegates to the service's server."""
        return self._main.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        """Delegates to the service's server."""
        return self._main.add_secure_port(address, server_credentials)

    def start(self) -> None:
        """Start both."""
        self._health.start()
        self._main.start()

    def stop(self, grace: float | None) -> threading.Event:
        """Stop both; the event is set once the service's server has stopped."""
        self._health.stop(grace)
        return self._main.stop(grace)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Wait for the service's server."""
        return self._main.wait_for_termination(timeout)


@dataclass(frozen=True)
class ClientSecurity:
    """A client's credentials, read once: channel credentials (None: plaintext), token, certificate name."""

    credentials: grpc.ChannelCredentials | None = None
    server_name: str = ""
    # Never logged; sent only on TLS channels (GrpcClientSecurity refuses a token without tls).
    token: str | None = field(default=None, repr=False)

    @classmethod
    def load(cls, cfg: GrpcClientSecurity | None, setting: str) -> ClientSecurity:
        """Read the files `cfg` names; CredentialsError naming the setting when one is wrong."""
        if cfg is None or cfg.tls is None:
            return cls()
        tls = cfg.tls
        ca = read_pem(tls.ca, f"{setting}.tls.ca") if tls.ca is not None else None
        cert = key = None
        if tls.cert is not None:
            cert, key = _tls_pair(tls, f"{setting}.tls")
        credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
        token = read_token(cfg.token_file, f"{setting}.token_file") if cfg.token_file is not None else None
        return cls(credentials, cfg.server_name, token)


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds "authorization: Bearer TOKEN" to every call.

    An interceptor, not grpc.access_token_call_credentials: that plugin runs on gRPC's own thread for
    every call and cost ~3 ms per call here (make bench-grpc-security); the TLS-only rule it enforces is
    GrpcClientSecurity's validator's.
    """

    def __init__(self, token: str) -> None:
        self._metadata = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self._metadata]
        return _CallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready, details.compression
        )

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Unary call with the token."""
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        """Server-streaming call with the token."""
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        """Client-streaming call with the token."""
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        """Bidirectional call with the token."""
        return continuation(self._details(client_call_details), request_iterator)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):  # type: ignore[misc]
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


def open_channel(
    address: str, security: ClientSecurity | None = None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """A channel to `address`: plaintext, or TLS with the client's certificate and token when `security` has them."""
    opts = list(options)
    if security is None or security.credentials is None:
        return grpc.insecure_channel(address, options=opts)
    if security.server_name:
        opts.append(("grpc.ssl_target_name_override", security.server_name))
    channel = grpc.secure_channel(address, security.credentials, options=opts)
    if security.token is not None:
        return grpc.intercept_channel(channel, _BearerToken(security.token))
    return channel


def method_path(service_name: str, method: str) -> str:
    """The full method name gRPC routes by, e.g. /vigil.memory.v1.MemoryService/Retrieve."""
    return f"/{service_name}/{method}"


def create_server(
    address: str,
    register: Callable[[grpc.Server], None],
    service_names: Sequence[str],
    *,
    max_workers: int = 8,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    call_limits: Mapping[str, CallLimit] | None = None,
    security: ServerSecurity | None = None,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Build (not start) a server on `address` ("127.0.0.1:0" picks a free port); return it and its port.

    `register` adds the service's servicers; every name in `service_names` is
    reported SERVING by the standard grpc.health.v1 service, and reflection lists them.
    `call_limits` (full method name -> CallLimit) bounds the expensive methods' concurrency.
    `security` (ServerSecurity.load) serves TLS and checks callers; None: plaintext, everyone allowed.
    """
    limits = dict(call_limits or {})
    security = security or ServerSecurity()
    # Workers for every limited call at once plus two, so health checks and the refusals themselves
    # never wait behind a full pool (a queued call is not yet intercepted, so it could not be refused).
    workers = max(max_workers, sum(limit.limit for limit in limits.values()) + 2)
    interceptors: list[grpc.ServerInterceptor] = []
    if security.checks_callers:
        interceptors.append(AuthInterceptor(security))
    if limits:
        interceptors.append(AdmissionInterceptor(limits))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        interceptors=interceptors or None,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )
    register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ["", *service_names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    if security.credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, security.credentials)
    if port == 0:
        raise OSError(f"cannot bind gRPC server to {address}")
    if security.credentials is not None and security.health_port:
        probe = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        # The same servicer: the probe sees NOT_SERVING as soon as the service drains.
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probe)
        host = address.rsplit(":", 1)[0]
        if probe.add_insecure_port(f"{host}:{security.health_port}") == 0:
            raise OSError(f"cannot bind the plaintext health port {host}:{security.health_port}")
        return _WithHealthPort(server, probe), port, health_servicer
    return server, port, health_servicer


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    """End the RPC with `code` and a message a person can act on (context.abort raises; this says so to mypy)."""
    context.abort(code, message)
    raise AssertionError("grpc.ServicerContext.abort returned")


def server_security(cfg: GrpcServerSecurity, setting: str = "grpc_security") -> ServerSecurity:
    """ServerSecurity.load for a composition root: a bad file is a StageError (exit 2 with the message)."""
    from services.common.runtime import StageError

    try:
        return ServerSecurity.load(cfg, setting)
    except CredentialsError as exc:
        raise StageError(str(exc)) from exc


def client_security(cfg: GrpcClientSecurity | None, setting: str) -> ClientSecurity:
    """ClientSecurity.load for a composition root: a bad file is a StageError (exit 2 with the message)."""
    from services.common.runtime import StageError

    try:
        return ClientSecurity.load(cfg, setting)
    except CredentialsError as exc:
        raise StageError(str(exc)) from exc
