"""What crosses the WAN: units of a plan become Alert / Evidence messages on the cloud topics."""

from __future__ import annotations

import time

from services.common.bus import Bus
from services.common.signing import Signer
from services.uplink import metrics
from services.uplink.passthrough import alert_from_event
from services.uplink.scheduler import Unit, UnitKind
from vigil.alert.v1 import alert_pb2
from vigil.event.v1 import event_pb2


class CloudSender:
    """Publishes one unit and waits for the cloud broker's acknowledgement (that is its delivery)."""

    def __init__(self, cloud: Bus, alerts_topic: str, evidence_topic: str, signer: Signer | None = None) -> None:
        self._cloud = cloud
        # Cloud consumers verify this signature: a record on the cloud topics that no uplink signed is no alert.
        self._signer = signer
        self._alerts = alerts_topic
        self._evidence = evidence_topic

    def __call__(self, unit: Unit, event: event_pb2.Event) -> None:
        """Send `unit` of `event`; raises if the cloud does not acknowledge it."""
        headers = {"vigil-event-id": event.event_id, "vigil-unit": unit.kind.value}
        now = time.time_ns()
        if unit.kind is UnitKind.JSON:
            alert = alert_from_event(event, now)
            self._publish(self._alerts, alert.SerializeToString(), event.event_id, headers)
            metrics.ALERTS_SENT.inc()
            metrics.ALERT_DELAY_SECONDS.observe(max(0.0, (now - event.created_time_ns) / 1e9))
        else:
            source = event.roi if unit.kind is UnitKind.ROI else event.box
            evidence = alert_pb2.Evidence(
                event_id=event.event_id, camera_id=event.camera_id, unit=source, sent_time_ns=now
            )
            self._publish(self._evidence, evidence.SerializeToString(), event.event_id, headers)
            metrics.EVIDENCE_SENT.labels(kind=unit.kind.value).inc()
        metrics.BYTES_SENT.labels(kind=unit.kind.value).inc(unit.size_bytes)
        self._cloud.flush()

    def _publish(self, topic: str, value: bytes, key: str, headers: dict[str, str]) -> None:
        if self._signer is not None:
            headers = {**headers, **self._signer.headers(topic, key, value)}
        self._cloud.publish(topic, value, key=key, headers=headers)
