"""`python -m services.reasoning`: serve Ask over gRPC, answering from the edge memory's keyframes."""

from __future__ import annotations

import logging

from services.common.grpc_runtime import serve_until_signalled
from services.common.logging import configure_logging
from services.common.metrics import start_metrics_server
from services.models.answerers.base import build_answerer
from services.reasoning.config import ReasoningSettings
from services.reasoning.grpc_server import create_server
from services.reasoning.reasoner import GrpcMemory, Reasoner

log = logging.getLogger("services.reasoning")


def main() -> None:
    """Load the answerer, connect to the edge memory, serve until SIGTERM."""
    settings = ReasoningSettings()
    configure_logging(settings.log_level, settings.log_json)
    start_metrics_server(settings.metrics_port)
    cfg = settings.reasoning
    answerer = build_answerer(cfg.vlm)
    memory = GrpcMemory(cfg.memory_address, cfg.memory_timeout_s)
    server, port, health = create_server(settings.grpc_address, Reasoner(memory, answerer, cfg.max_question_chars))
    log.info("reasoning serving on port %d, answerer %s, edge memory %s", port, answerer.name, cfg.memory_address)
    serve_until_signalled(server, health)  # type: ignore[arg-type]
    memory.close()


if __name__ == "__main__":
    main()
