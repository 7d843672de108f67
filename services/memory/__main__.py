"""`python -m services.memory`: store frames and index entries from the bus, serve Retrieve over gRPC."""

from __future__ import annotations

import logging
import threading

from services.common.bus.factory import make_bus
from services.common.grpc_runtime import serve_until_signalled
from services.common.logging import configure_logging
from services.common.metrics import start_metrics_server
from services.memory.config import MemorySettings
from services.memory.grpc_server import create_server
from services.memory.service import Memory

log = logging.getLogger("services.memory")


def main() -> None:
    """Open the memory, start both topic consumers and the retention sweeper, serve until SIGTERM."""
    settings = MemorySettings()
    configure_logging(settings.log_level, settings.log_json)
    start_metrics_server(settings.metrics_port)
    cfg = settings.memory
    memory = Memory(cfg)
    bus = make_bus(settings.bus, client_id="vigil-memory")
    topics = settings.topics
    consumers = [
        bus.consumer(
            [topics.frames],
            cfg.frames_consumer_group,
            memory.writer.on_frame,
            dead_letter_topic=topics.dead_letter(topics.frames),
        ),
        bus.consumer(
            [topics.index],
            cfg.index_consumer_group,
            memory.writer.on_index_entry,
            dead_letter_topic=topics.dead_letter(topics.index),
        ),
    ]
    stop = threading.Event()
    threads = [
        threading.Thread(target=c.run, args=(stop,), name=f"memory-consumer-{i}") for i, c in enumerate(consumers)
    ]
    threads.append(threading.Thread(target=memory.run_sweeper, args=(stop,), name="retention", daemon=True))
    for t in threads:
        t.start()
    server, port, health = create_server(settings.grpc_address, memory)
    log.info("memory serving on port %d (%d index points)", port, memory.count())
    serve_until_signalled(server, health, stop=stop)  # type: ignore[arg-type]
    for t in threads:
        t.join(timeout=10)
    for c in consumers:
        c.close()
    bus.close()
    memory.close()


if __name__ == "__main__":
    main()
