"""Composition root of the uplink: scheduler by name, estimator, cloud sender, the edge consumer."""

from __future__ import annotations

import inspect
import threading
from typing import Any

from services.common.bus import Bus, Message
from services.common.config import TopicsConfig
from services.uplink import metrics
from services.uplink.cloud import CloudSender
from services.uplink.config import UplinkConfig
from services.uplink.consumer import EventQueuer
from services.uplink.delivery_log import DeliveryLog
from services.uplink.dispatcher import UplinkDispatcher
from services.uplink.estimator import BandwidthEstimator
from services.uplink.scheduler import Scheduler, SchedulerParams, Unit, UnitKind
from vigil.event.v1 import event_pb2


def scheduler_registry() -> dict[str, type[Scheduler]]:
    """Every concrete scheduling method by its `name`: DAT, the paper's baselines, Vigil's methods."""
    from services.uplink import baselines, scheduler, vigil_methods

    found: dict[str, type[Scheduler]] = {}
    for module in (scheduler, baselines, vigil_methods):
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, Scheduler) and not inspect.isabstract(obj):
                found[obj.name] = obj
    return found


def build_scheduler(name: str, params: SchedulerParams) -> Scheduler:
    """The scheduling method called `name`; ValueError lists the known ones."""
    registry = scheduler_registry()
    if name not in registry:
        raise ValueError(f"unknown uplink method {name!r}; choose one of {sorted(registry)}")
    return registry[name](params)


class ScheduledUplink:
    """The edge consumer (queue = the events topic) and the interval loop, wired together."""

    def __init__(self, edge: Bus, cloud: Bus, topics: TopicsConfig, config: UplinkConfig) -> None:
        params = SchedulerParams(interval_s=config.interval_s, d_vis_s=config.d_vis_s, beta=config.beta)
        state = config.state_dir / f"delivered-{config.consumer_group}.log" if config.state_dir else None
        self.delivered = DeliveryLog(state)
        self._sender = CloudSender(cloud, topics.alerts, topics.evidence)
        scheduler = build_scheduler(config.method, params)
        if scheduler.alert_kinds != frozenset({UnitKind.JSON}):
            # Fixed Box / Fixed ROI send an image as the alert: a simulation baseline, not a service mode.
            raise ValueError(f"uplink method {config.method!r} sends no JSON alert; it exists for `vigil bench uplink`")
        self.dispatcher = UplinkDispatcher(
            scheduler,
            BandwidthEstimator(config.prior_bandwidth_Bps),
            self._send,
            ack=self._ack,
            on_expired=lambda _unit: metrics.EVIDENCE_EXPIRED.inc(),
        )
        metrics.PENDING_EVENTS.set_function(lambda: len(self.dispatcher))
        metrics.BANDWIDTH_ESTIMATE.set_function(self.dispatcher.estimator.estimate)
        # manual_ack: an event's offset is committed only once the dispatcher finished it.
        self.consumer = edge.consumer(
            [topics.events],
            config.consumer_group,
            EventQueuer(self.dispatcher, self.delivered, self._ack),
            dead_letter_topic=topics.dead_letter(topics.events),
            manual_ack=True,
        )
        self._threads: list[threading.Thread] = []

    def _send(self, unit: Unit, event: event_pb2.Event) -> None:
        self._sender(unit, event)
        if unit.kind is UnitKind.JSON:
            self.delivered.record(event.event_id)

    def _ack(self, token: Any) -> None:
        msg: Message = token
        self.consumer.ack(msg)

    def start(self, stop: threading.Event) -> None:
        """Start the consumer and the interval loop; both end when `stop` is set."""
        self._threads = [
            threading.Thread(target=self.dispatcher.run, args=(stop,), name="uplink-intervals", daemon=True),
            threading.Thread(target=self.consumer.run, args=(stop,), name="uplink-events", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def join(self, timeout_s: float = 30.0) -> None:
        """Wait for both loops, then commit what the dispatcher acknowledged on its way out."""
        for t in self._threads:
            t.join(timeout=timeout_s)
        self.consumer.close()
        self.delivered.close()
