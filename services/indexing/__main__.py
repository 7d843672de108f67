"""`python -m services.indexing`: frames topic -> scenes, clusters, embeddings -> index topic."""

from __future__ import annotations

import logging
import signal
import threading

from services.common.bus.factory import make_bus
from services.common.logging import configure_logging
from services.common.metrics import start_metrics_server
from services.indexing.bootstrap import build_cluster_embedder
from services.indexing.config import IndexingSettings
from services.indexing.consumer import IndexingHandler

log = logging.getLogger("services.indexing")


def main() -> None:
    """Consume frames until SIGTERM; on the way out, close open clusters so their frames are indexed."""
    settings = IndexingSettings()
    configure_logging(settings.log_level, settings.log_json)
    start_metrics_server(settings.metrics_port)
    cfg = settings.indexing
    stage = build_cluster_embedder(cfg)
    bus = make_bus(settings.bus, client_id="vigil-indexing")
    handler = IndexingHandler(stage, bus, settings.topics.index, cfg)
    consumer = bus.consumer(
        [settings.topics.frames],
        cfg.consumer_group,
        handler,
        dead_letter_topic=settings.topics.dead_letter(settings.topics.frames),
        manual_ack=True,
    )
    handler.ack = consumer.ack
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    flusher = threading.Thread(target=handler.run_idle_flusher, args=(stop,), name="idle-flush", daemon=True)
    flusher.start()
    log.info("indexing %s -> %s with %s", settings.topics.frames, settings.topics.index, stage.embedder.name)
    consumer.run(stop)
    published = handler.flush_all()
    log.info("closed open clusters on shutdown: %d index entries", published)
    consumer.close()
    bus.close()


if __name__ == "__main__":
    main()
