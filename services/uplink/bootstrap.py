"""Composition root of the uplink: scheduler by name, estimator, cloud sender and link, the edge consumer."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from services.common.auth import CredentialsError
from services.common.bus import Bus, Handler, Message
from services.common.bus.factory import make_bus
from services.common.config import TopicsConfig
from services.common.runtime import Stage, StageError
from services.common.signing import Signer, Verifier, signer_from_config, verifier_from_config
from services.uplink import metrics
from services.uplink.cloud import CloudSender
from services.uplink.config import UplinkConfig, UplinkSettings
from services.uplink.consumer import EventForwarder, EventQueuer
from services.uplink.delivery_log import DeliveryLog
from services.uplink.dispatcher import UplinkDispatcher
from services.uplink.estimator import BandwidthEstimator
from services.uplink.scheduler import Scheduler, SchedulerParams, Unit, UnitKind
from vigil.event.v1 import event_pb2

log = logging.getLogger(__name__)


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


class ScheduledUplink(Stage):
    """The edge consumer (queue = the events topic) and the interval loop, wired together."""

    def __init__(
        self,
        edge: Bus,
        cloud: Bus,
        topics: TopicsConfig,
        config: UplinkConfig,
        signer: Signer | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        params = SchedulerParams(interval_s=config.interval_s, d_vis_s=config.d_vis_s, beta=config.beta)
        state = config.state_dir / f"delivered-{config.consumer_group}.log" if config.state_dir else None
        self.delivered = DeliveryLog(state)
        self._sender = CloudSender(cloud, topics.alerts, topics.evidence, signer)
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
            on_probe=lambda _unit: metrics.PROBES.inc(),
        )
        metrics.PENDING_EVENTS.set_function(lambda: len(self.dispatcher))
        metrics.BANDWIDTH_ESTIMATE.set_function(self.dispatcher.estimator.estimate)
        # manual_ack: an event's offset is committed only once the dispatcher finished it; the
        # dispatcher acknowledges what was delivered on its way out, before the consumer commits.
        self.consumer = edge.consumer(
            [topics.events],
            config.consumer_group,
            _verified(EventQueuer(self.dispatcher, self.delivered, self._ack), verifier),
            dead_letter_topic=topics.dead_letter(topics.events),
            manual_ack=True,
        )
        super().__init__(
            "uplink",
            consumers=[self.consumer],
            loops=[("intervals", self.dispatcher.run)],
            closers=[self.delivered.close],
            description=f"{topics.events} -> {topics.alerts} with {config.method}",
        )

    def _send(self, unit: Unit, event: event_pb2.Event) -> None:
        self._sender(unit, event)
        if unit.kind is UnitKind.JSON:
            self.delivered.record(event.event_id)

    def _ack(self, token: Any) -> None:
        msg: Message = token
        self.consumer.ack(msg)


def _verified(handler: Handler, verifier: Verifier | None) -> Handler:
    return handler if verifier is None else verifier.wrap(handler)


def cloud_bus(settings: UplinkSettings, edge: Bus) -> Bus:
    """The bus alerts go out on: the cloud's Kafka (or the edge bus), shaped by a trace when one is configured."""
    cfg = settings.uplink
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


def build(settings: UplinkSettings, bus: Bus | None, *, cloud: Bus | None = None) -> Stage:
    """The uplink stage: scheduled (DAT or another method) or pass-through; `cloud` defaults to `cloud_bus`."""
    if bus is None:
        raise ValueError("the uplink needs a bus")
    topics, cfg = settings.topics, settings.uplink
    try:
        signer = signer_from_config(settings.signing)
        # With signing on, an event gating did not sign is dead-lettered here, never sent as an alert.
        verifier = verifier_from_config(settings.signing)
    except CredentialsError as exc:
        raise StageError(str(exc)) from exc
    out = cloud if cloud is not None else cloud_bus(settings, bus)
    closers = [out.close] if cloud is None and out is not bus else []
    if cfg.mode == "pass-through":
        consumer = bus.consumer(
            [topics.events],
            cfg.consumer_group,
            _verified(EventForwarder(out, topics.alerts, topics.evidence, signer=signer), verifier),
            dead_letter_topic=topics.dead_letter(topics.events),
        )
        return Stage(
            "uplink",
            consumers=[consumer],
            closers=closers,
            description=f"{topics.events} -> {topics.alerts} (pass-through, unscheduled)"
            + (f", signed with key {signer.key_id}" if signer else ""),
        )
    stage = ScheduledUplink(bus, out, topics, cfg, signer, verifier)
    stage.closers += closers
    return stage
