"""`python -m services.gating`: consume frames, publish events, serve Detect over gRPC."""

from __future__ import annotations

import logging
import threading

from services.common.bus.factory import make_bus
from services.common.grpc_runtime import serve_until_signalled
from services.common.logging import configure_logging
from services.common.metrics import start_metrics_server
from services.gating.bootstrap import build_gater
from services.gating.config import GatingSettings
from services.gating.consumer import FrameHandler
from services.gating.grpc_server import create_server

log = logging.getLogger("services.gating")


def main() -> None:
    """Start the consumer thread and the gRPC server; stop both on SIGTERM."""
    settings = GatingSettings()
    configure_logging(settings.log_level, settings.log_json)
    start_metrics_server(settings.metrics_port)
    gater = build_gater(settings.gating)
    bus = make_bus(settings.bus, client_id="vigil-gating")
    handler = FrameHandler(gater, bus, settings.topics.events)
    consumer = bus.consumer(
        [settings.topics.frames],
        settings.gating.consumer_group,
        handler,
        dead_letter_topic=settings.topics.dead_letter(settings.topics.frames),
    )
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop,), name="frames-consumer", daemon=True)
    worker.start()
    server, port, health = create_server(settings.grpc_address, gater, settings.gating.max_image_bytes)
    log.info(
        "gating serving on port %d, detector %s, structurer %s",
        port,
        gater.detector.name,
        gater.structurer.producer.kind,
    )
    serve_until_signalled(server, health, stop=stop)  # type: ignore[arg-type]
    worker.join(timeout=10)
    consumer.close()
    bus.close()


if __name__ == "__main__":
    main()
