"""gRPC transport of reasoning: AskRequest -> Reasoner -> AskResponse, errors mapped once here."""

from __future__ import annotations

import logging

import grpc

from services.common.grpc_runtime import CallLimit, ServerSecurity, abort, method_path
from services.common.grpc_runtime import create_server as _create_server
from services.common.memory_api import MemoryUnavailable, RetrieveInvalid, RetrieveNotFound
from services.models.answerers.base import AnswerError, AnswerUnavailable
from services.reasoning.reasoner import Reasoner
from vigil.reasoning.v1 import reasoning_pb2, reasoning_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = reasoning_pb2.DESCRIPTOR.services_by_name["ReasoningService"].full_name


class ReasoningServicer(reasoning_pb2_grpc.ReasoningServiceServicer):
    """Ask."""

    def __init__(self, reasoner: Reasoner) -> None:
        self._reasoner = reasoner

    def Ask(self, request: reasoning_pb2.AskRequest, context: grpc.ServicerContext) -> reasoning_pb2.AskResponse:
        """Answer a question about the past from the edge memory's keyframes."""
        try:
            # The client's deadline bounds the Retrieve made on its behalf (None: no deadline was set).
            return self._reasoner.ask(request, timeout_s=context.time_remaining())
        except RetrieveInvalid as e:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except RetrieveNotFound as e:
            abort(context, grpc.StatusCode.NOT_FOUND, str(e))
        except MemoryUnavailable as e:
            abort(context, grpc.StatusCode.UNAVAILABLE, str(e))
        except AnswerUnavailable as e:
            abort(context, grpc.StatusCode.UNAVAILABLE, f"the VLM backend is unavailable: {e}")
        except AnswerError as e:
            abort(context, grpc.StatusCode.INTERNAL, f"the answerer failed: {e}")


def create_server(
    address: str, reasoner: Reasoner, max_concurrent_ask: int = 4, security: ServerSecurity | None = None
) -> tuple[grpc.Server, int, object]:
    """Reasoning gRPC server (not started) with health and reflection; port 0 picks a free one."""
    servicer = ReasoningServicer(reasoner)
    return _create_server(
        address,
        lambda s: reasoning_pb2_grpc.add_ReasoningServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
        max_message_bytes=64 * 1024 * 1024,
        call_limits={method_path(SERVICE_NAME, "Ask"): CallLimit(max_concurrent_ask, "reasoning.max_concurrent_ask")},
        security=security,
    )
