"""What the console calls: Ask (reasoning over gRPC, or in this process) and the health probes of its backends."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.grpc_runtime import ClientSecurity, open_channel
from services.common.memory_api import MemoryUnavailable, raise_for_status
from vigil.reasoning.v1 import reasoning_pb2, reasoning_pb2_grpc

log = logging.getLogger(__name__)

# Ask(request, timeout_s) -> response; raises RetrieveInvalid, RetrieveNotFound, MemoryUnavailable,
# AnswerUnavailable or AnswerError (services/common/memory_api.py, services/models/answerers/base.py).
Asker = Callable[[reasoning_pb2.AskRequest, float], reasoning_pb2.AskResponse]


class NoAsker:
    """Ask when no reasoning service is configured: says so."""

    def __call__(self, request: reasoning_pb2.AskRequest, timeout_s: float) -> reasoning_pb2.AskResponse:
        """Always MemoryUnavailable, with what to set."""
        raise MemoryUnavailable(
            "no reasoning service is configured: set VIGIL_CONSOLE__REASONING_ADDRESS (or vigil console --reasoning)"
        )


class GrpcAsker:
    """ReasoningService.Ask over gRPC; its status codes come back as the typed errors (raise_for_status).

    `security` (plaintext when None) carries TLS and the console's token: a reasoning service installed by the
    cloud chart admits Ask only for identities its allow-list names.
    """

    def __init__(self, address: str, security: ClientSecurity | None = None) -> None:
        self.address = address
        self._channel = open_channel(address, security, [("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        self._stub = reasoning_pb2_grpc.ReasoningServiceStub(self._channel)

    def __call__(self, request: reasoning_pb2.AskRequest, timeout_s: float) -> reasoning_pb2.AskResponse:
        """One Ask within `timeout_s`."""
        try:
            response: reasoning_pb2.AskResponse = self._stub.Ask(request, timeout=timeout_s)
            return response
        except grpc.RpcError as exc:
            raise_for_status(exc, f"reasoning service at {self.address}")

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()


@dataclass(frozen=True)
class Health:
    """One backend's last probe: reachable (True), not (False) or not known (None), and what a person should read."""

    name: str
    ok: bool | None
    detail: str
    checked_ns: int


Probe = Callable[[], str]


def grpc_health_probe(address: str, security: ClientSecurity | None = None, timeout_s: float = 2.0) -> Probe:
    """A probe of a gRPC server's grpc.health.v1 (overall status); raises when it does not answer SERVING.

    Over TLS when `security` says so: a TLS server does not answer a plaintext probe, so a probe without the
    Ask channel's credentials would report a healthy service as unreachable.
    """
    where = f"{address} (TLS)" if security is not None and security.credentials is not None else address

    def probe() -> str:
        with open_channel(address, security) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(f"{address} answers {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}")
        return f"serving at {where}"

    return probe


class HealthBoard:
    """Probes each backend every `interval_s` on its own thread; the page reads the last results."""

    def __init__(self, probes: dict[str, Probe], interval_s: float) -> None:
        self._probes = probes
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._results: dict[str, Health] = {name: Health(name, False, "not checked yet", 0) for name in probes}

    def set(self, name: str, ok: bool | None, detail: str) -> None:
        """Record a result from outside the loop (the outcome of an Ask says whether memory answered)."""
        with self._lock:
            self._results[name] = Health(name, ok, detail, time.time_ns())

    def check_once(self) -> list[Health]:
        """Run every probe now."""
        for name, probe in self._probes.items():
            try:
                self.set(name, True, probe())
            except Exception as exc:  # any failure is what the health area must show, not a crash
                detail = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)  # type: ignore[attr-defined]
                self.set(name, False, f"unreachable: {detail or type(exc).__name__}")
        return self.results()

    def results(self) -> list[Health]:
        """The last result of every backend, in probe order."""
        with self._lock:
            return list(self._results.values())

    def run(self, stop: threading.Event) -> None:
        """Probe until `stop` is set."""
        while not stop.is_set():
            self.check_once()
            stop.wait(self._interval_s)


def kafka_probe(bootstrap: str, timeout_s: float = 2.0) -> Probe:
    """A probe of the Kafka bootstrap servers: one must answer an ApiVersions request (a TCP accept is not enough).

    A raw request rather than a client: kafka-python leaks an IO thread per failed bootstrap, and this runs
    every few seconds for as long as the broker is away.
    """
    import socket
    import struct

    def probe() -> str:
        errors = []
        for server in bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            body = struct.pack(">hhih", 18, 0, 7, len(b"vigil-console")) + b"vigil-console"
            try:
                with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
                    sock.settimeout(timeout_s)
                    sock.sendall(struct.pack(">i", len(body)) + body)
                    header = sock.recv(8)
                if len(header) == 8 and struct.unpack(">ii", header)[1] == 7:
                    return f"broker answers at {server.strip()}"
                errors.append(f"{server.strip()}: not a Kafka answer")
            except (OSError, ValueError) as exc:
                errors.append(f"{server.strip()}: {exc}")
        raise RuntimeError("; ".join(errors))

    return probe
