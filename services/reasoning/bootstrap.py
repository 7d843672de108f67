"""Composition root of reasoning: the answerer, the edge memory it asks, and the Ask server."""

from __future__ import annotations

from services.common.bus import Bus
from services.common.grpc_runtime import ServerSecurity, client_security, server_security
from services.common.memory_api import MemorySource
from services.common.runtime import GrpcEndpoint, Stage
from services.models.answerers.base import Answerer, build_answerer
from services.reasoning.config import ReasoningSettings
from services.reasoning.grpc_server import create_server
from services.reasoning.reasoner import GrpcMemory, Reasoner


class ReasoningStage(Stage):
    """Ask over gRPC: question -> the edge memory's keyframes -> the answerer."""

    def __init__(
        self, settings: ReasoningSettings, reasoner: Reasoner, *, close_memory: bool, security: ServerSecurity
    ) -> None:
        self.reasoner = reasoner

        def serve() -> GrpcEndpoint:
            return GrpcEndpoint(
                *create_server(settings.grpc_address, reasoner, settings.reasoning.max_concurrent_ask, security)
            )

        super().__init__(
            "reasoning",
            serve=serve,
            closers=[reasoner.memory.close] if close_memory else [],
            description=f"answerer {reasoner.answerer.name}, edge memory {settings.reasoning.memory_address}",
        )


def build(
    settings: ReasoningSettings,
    bus: Bus | None = None,
    *,
    memory: MemorySource | None = None,
    answerer: Answerer | None = None,
) -> ReasoningStage:
    """The reasoning stage; `memory` defaults to the edge memory service over gRPC (a caller's stays the caller's)."""
    cfg = settings.reasoning
    owned = memory is None
    security = server_security(settings.grpc_security)
    source = memory or GrpcMemory(
        cfg.memory_address,
        cfg.memory_timeout_s,
        client_security(cfg.memory_security, "reasoning.memory_security"),
    )
    reasoner = Reasoner(source, answerer or build_answerer(cfg.vlm), cfg.max_question_chars)
    return ReasoningStage(settings, reasoner, close_memory=owned, security=security)
