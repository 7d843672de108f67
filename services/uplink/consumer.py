"""Kafka entrypoints of the uplink: queue events for the scheduler, or forward them (pass-through)."""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import DecodeError

from services.common.bus import Bus, Message, PoisonMessage
from services.common.metrics import LatencyRecorder
from services.common.signing import Signer
from services.uplink import metrics
from services.uplink.delivery_log import DeliveryLog
from services.uplink.dispatcher import UplinkDispatcher
from services.uplink.passthrough import alert_from_event, evidence_from_event
from services.uplink.scheduler import PendingEvent
from vigil.event.v1 import event_pb2


def decode_event(msg: Message) -> event_pb2.Event:
    """An Event from the events topic; PoisonMessage when it is not a usable one."""
    try:
        event = event_pb2.Event.FromString(msg.value)
    except DecodeError as exc:
        raise PoisonMessage(f"not a vigil.event.v1.Event: {exc}") from exc
    if not event.event_id or not event.json.payload:
        raise PoisonMessage("event without event_id or JSON payload")
    return event


def pending_from_event(event: event_pb2.Event) -> PendingEvent:
    """The scheduler's view of an event: priority and real unit sizes; it arrived when gating wrote it."""
    return PendingEvent(
        event_id=event.event_id,
        arrival_s=event.created_time_ns / 1e9,
        level=event.level,
        score=event.score,
        c_json=event.json.size_bytes,
        c_roi=event.roi.size_bytes,
        c_box=event.box.size_bytes,
    )


class EventQueuer:
    """Handles one message of the events topic in scheduled mode: queue it; the offset waits for its ack."""

    def __init__(self, dispatcher: UplinkDispatcher, delivered: DeliveryLog, ack: Callable[[Message], None]) -> None:
        self._dispatcher = dispatcher
        self._delivered = delivered
        self._ack = ack
        self.skipped_delivered = 0

    def __call__(self, msg: Message) -> None:
        """Decode and queue; an event whose alert already went out (before a restart) is acked at once."""
        event = decode_event(msg)
        if event.event_id in self._delivered:
            self.skipped_delivered += 1
            self._ack(msg)
            return
        self._dispatcher.add(pending_from_event(event), event, msg)


class EventForwarder:
    """Handles one message of the events topic (pass-through mode)."""

    def __init__(
        self,
        cloud: Bus,
        alerts_topic: str,
        evidence_topic: str,
        send_evidence: bool = True,
        latency: LatencyRecorder | None = None,
        signer: Signer | None = None,
    ) -> None:
        self._cloud = cloud
        self._signer = signer
        self._alerts = alerts_topic
        self._evidence = evidence_topic
        self._send_evidence = send_evidence
        self._latency = latency
        self.alerts = 0

    def __call__(self, msg: Message) -> None:
        """Forward one event; the bus flushes the cloud side before committing the edge offset."""
        event = decode_event(msg)
        alert = alert_from_event(event)
        headers = {"vigil-event-id": event.event_id}
        self._publish(self._alerts, alert.SerializeToString(), event.event_id, headers)
        metrics.ALERTS_SENT.inc()
        metrics.BYTES_SENT.labels(kind="json").inc(event.json.size_bytes)
        delay_s = (alert.sent_time_ns - event.created_time_ns) / 1e9
        metrics.ALERT_DELAY_SECONDS.observe(max(delay_s, 0.0))
        if self._latency is not None:
            self._latency.record("event_to_alert", delay_s * 1e3)
        if self._send_evidence:
            for ev in evidence_from_event(event, alert.sent_time_ns):
                self._publish(self._evidence, ev.SerializeToString(), event.event_id, headers)
                kind = "roi" if ev.unit.kind == event_pb2.EVIDENCE_KIND_ROI else "box"
                metrics.EVIDENCE_SENT.labels(kind=kind).inc()
                metrics.BYTES_SENT.labels(kind=kind).inc(ev.unit.size_bytes)
        # The edge offset must not be committed before the cloud holds the alert.
        self._cloud.flush()
        self.alerts += 1

    def _publish(self, topic: str, value: bytes, key: str, headers: dict[str, str]) -> None:
        if self._signer is not None:
            headers = {**headers, **self._signer.headers(topic, key, value)}
        self._cloud.publish(topic, value, key=key, headers=headers)
