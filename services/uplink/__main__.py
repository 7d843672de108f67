"""`python -m services.uplink`: schedule events from the edge bus onto the cloud alert and evidence topics."""

from __future__ import annotations

import logging
import signal
import threading

from services.common.bus import Bus
from services.common.bus.factory import make_bus
from services.common.logging import configure_logging
from services.common.metrics import start_metrics_server
from services.uplink.bootstrap import ScheduledUplink
from services.uplink.config import UplinkConfig, UplinkSettings
from services.uplink.consumer import EventForwarder

log = logging.getLogger("services.uplink")


def _cloud_bus(settings: UplinkSettings, edge: Bus) -> Bus:
    cfg: UplinkConfig = settings.uplink
    cloud = make_bus(cfg.cloud_bus, client_id="vigil-uplink-cloud") if cfg.cloud_bus else edge
    if cfg.emulated_link_trace is not None:
        # Deferred: the emulation is for tests and benchmarks only, and its bandwidth trace is research data
        # (services.uplink.sim), which a production uplink never loads.
        from services.uplink.emulated_link import EmulatedLinkBus
        from services.uplink.sim.traces import load_trace

        trace = load_trace(cfg.emulated_link_trace, scale=cfg.emulated_link_scale)
        log.warning(
            "EMULATED uplink link: shaped by trace %s x %.2f (mean %.0f B/s)",
            trace.name,
            cfg.emulated_link_scale,
            trace.mean_Bps,
        )
        cloud = EmulatedLinkBus(cloud, trace.capacity_Bps)
    return cloud


def main() -> None:
    """Run until SIGTERM; on the way out, acknowledge what was delivered so a restart resends nothing."""
    settings = UplinkSettings()
    configure_logging(settings.log_level, settings.log_json)
    start_metrics_server(settings.metrics_port)
    edge = make_bus(settings.bus, client_id="vigil-uplink-edge")
    cloud = _cloud_bus(settings, edge)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    topics = settings.topics
    if settings.uplink.mode == "pass-through":
        forwarder = EventForwarder(cloud, topics.alerts, topics.evidence)
        consumer = edge.consumer(
            [topics.events],
            settings.uplink.consumer_group,
            forwarder,
            dead_letter_topic=topics.dead_letter(topics.events),
        )
        log.info("uplink forwarding %s -> %s (pass-through, unscheduled)", topics.events, topics.alerts)
        consumer.run(stop)
        consumer.close()
    else:
        uplink = ScheduledUplink(edge, cloud, topics, settings.uplink)
        log.info("uplink scheduling %s -> %s with %s", topics.events, topics.alerts, settings.uplink.method)
        uplink.start(stop)
        stop.wait()
        uplink.join()
    if cloud is not edge:
        cloud.close()
    edge.close()


if __name__ == "__main__":
    main()
