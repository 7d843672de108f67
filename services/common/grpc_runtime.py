"""gRPC server runtime: health, reflection, admission control, port 0 for tests.

(services/common/runtime.py starts and stops the server.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024

CALLS_REJECTED = Counter(
    "vigil_grpc_calls_rejected_total",
    "Calls turned away before they started: over the method's concurrency limit, or past their deadline",
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
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Build (not start) a server on `address` ("127.0.0.1:0" picks a free port); return it and its port.

    `register` adds the service's servicers; every name in `service_names` is
    reported SERVING by the standard grpc.health.v1 service, and reflection lists them.
    `call_limits` (full method name -> CallLimit) bounds the expensive methods' concurrency.
    """
    limits = dict(call_limits or {})
    # Workers for every limited call at once plus two, so health checks and the refusals themselves
    # never wait behind a full pool (a queued call is not yet intercepted, so it could not be refused).
    workers = max(max_workers, sum(limit.limit for limit in limits.values()) + 2)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        interceptors=[AdmissionInterceptor(limits)] if limits else None,
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
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind gRPC server to {address}")
    return server, port, health_servicer


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    """End the RPC with `code` and a message a person can act on (context.abort raises; this says so to mypy)."""
    context.abort(code, message)
    raise AssertionError("grpc.ServicerContext.abort returned")
