"""`python -m services.uplink`: forward events from the edge bus to the cloud alert and evidence topics."""

from __future__ import annotations

import logging
import signal
import threading

from services.common.bus.factory import make_bus
from services.common.logging import configure_logging
from services.common.metrics import start_metrics_server
from services.uplink.config import UplinkSettings
from services.uplink.consumer import EventForwarder

log = logging.getLogger("services.uplink")


def main() -> None:
    """Run the forwarder until SIGTERM."""
    settings = UplinkSettings()
    configure_logging(settings.log_level, settings.log_json)
    start_metrics_server(settings.metrics_port)
    edge = make_bus(settings.bus, client_id="vigil-uplink-edge")
    cloud = make_bus(settings.uplink.cloud_bus, client_id="vigil-uplink-cloud") if settings.uplink.cloud_bus else edge
    forwarder = EventForwarder(cloud, settings.topics.alerts, settings.topics.evidence, settings.uplink.send_evidence)
    consumer = edge.consumer(
        [settings.topics.events],
        settings.uplink.consumer_group,
        forwarder,
        dead_letter_topic=settings.topics.dead_letter(settings.topics.events),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("uplink forwarding %s -> %s (pass-through)", settings.topics.events, settings.topics.alerts)
    consumer.run(stop)
    consumer.close()
    edge.close()
    if cloud is not edge:
        cloud.close()


if __name__ == "__main__":
    main()
