"""Kafka entrypoint of the uplink: decode an Event, send its alert (and evidence) to the cloud bus."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from services.common.bus import Bus, Message, PoisonMessage
from services.common.metrics import LatencyRecorder
from services.uplink import metrics
from services.uplink.passthrough import alert_from_event, evidence_from_event
from vigil.event.v1 import event_pb2


class EventForwarder:
    """Handles one message of the events topic (pass-through mode)."""

    def __init__(
        self,
        cloud: Bus,
        alerts_topic: str,
        evidence_topic: str,
        send_evidence: bool = True,
        latency: LatencyRecorder | None = None,
    ) -> None:
        self._cloud = cloud
        self._alerts = alerts_topic
        self._evidence = evidence_topic
        self._send_evidence = send_evidence
        self._latency = latency
        self.alerts = 0

    def __call__(self, msg: Message) -> None:
        """Forward one event; the bus flushes the cloud side before committing the edge offset."""
        try:
            event = event_pb2.Event.FromString(msg.value)
        except DecodeError as exc:
            raise PoisonMessage(f"not a vigil.event.v1.Event: {exc}") from exc
        if not event.event_id or not event.json.payload:
            raise PoisonMessage("event without event_id or JSON payload")
        alert = alert_from_event(event)
        headers = {"vigil-event-id": event.event_id}
        self._cloud.publish(self._alerts, alert.SerializeToString(), key=event.event_id, headers=headers)
        metrics.ALERTS_SENT.inc()
        metrics.BYTES_SENT.labels(kind="json").inc(event.json.size_bytes)
        delay_s = (alert.sent_time_ns - event.created_time_ns) / 1e9
        metrics.ALERT_DELAY_SECONDS.observe(max(delay_s, 0.0))
        if self._latency is not None:
            self._latency.record("event_to_alert", delay_s * 1e3)
        if self._send_evidence:
            for ev in evidence_from_event(event, alert.sent_time_ns):
                self._cloud.publish(self._evidence, ev.SerializeToString(), key=event.event_id, headers=headers)
                kind = "roi" if ev.unit.kind == event_pb2.EVIDENCE_KIND_ROI else "box"
                metrics.EVIDENCE_SENT.labels(kind=kind).inc()
                metrics.BYTES_SENT.labels(kind=kind).inc(ev.unit.size_bytes)
        # The edge offset must not be committed before the cloud holds the alert.
        self._cloud.flush()
        self.alerts += 1
