"""`python -m services.ingest`: read the configured source and publish its frames until it ends."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from services.common.bus.factory import make_bus
from services.common.logging import configure_logging
from services.common.metrics import start_metrics_server
from services.ingest.config import IngestSettings
from services.ingest.ingest import run_ingest
from services.ingest.source import SourceError, open_source, resolve_fps

log = logging.getLogger("services.ingest")


def main() -> int:
    """Exit 0 when the source was read to its end, 2 when it cannot be opened."""
    settings = IngestSettings()
    configure_logging(settings.log_level, settings.log_json)
    cfg = settings.ingest
    if not cfg.source:
        log.error("no source configured: set VIGIL_INGEST__SOURCE to a video file, an image folder or an rtsp:// URL")
        return 2
    try:
        source = open_source(cfg.source, fps=resolve_fps(cfg.source, cfg.fps), open_timeout_s=cfg.open_timeout_s)
    except SourceError as exc:
        log.error("%s", exc)
        return 2
    start_metrics_server(settings.metrics_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    bus = make_bus(settings.bus, client_id="vigil-ingest")
    try:
        result = run_ingest(
            source,
            bus,
            settings.topics.frames,
            cfg.camera_id,
            jpeg_quality=cfg.jpeg_quality,
            max_side=cfg.max_side,
            realtime=cfg.realtime,
            stop=stop,
        )
    finally:
        source.close()
        bus.close()
    log.info("published %d frames (%d corrupt skipped)", result.published, result.stats.corrupt_frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
