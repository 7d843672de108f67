"""Pass-through uplink: every event becomes an alert at once, its evidence follows unscheduled.

This keeps the alert path whole until the DAT scheduler replaces it; it makes
no bandwidth decision. The alert carries the event's UUID so consumers can
de-duplicate a redelivery.
"""

from __future__ import annotations

import time

from vigil.alert.v1 import alert_pb2
from vigil.event.v1 import event_pb2


def alert_from_event(event: event_pb2.Event, sent_time_ns: int | None = None) -> alert_pb2.Alert:
    """The user-facing alert for an event: the structured JSON and its identity, no images."""
    return alert_pb2.Alert(
        event_id=event.event_id,
        camera_id=event.camera_id,
        frame_seq=event.frame_seq,
        pts_s=event.pts_s,
        capture_time_ns=event.capture_time_ns,
        level=event.level,
        score=event.score,
        event_json=event.json.payload.decode(),
        producer=event.producer,
        created_time_ns=event.created_time_ns,
        sent_time_ns=sent_time_ns or time.time_ns(),
        roi_bytes=event.roi.size_bytes,
        box_bytes=event.box.size_bytes,
    )


def evidence_from_event(event: event_pb2.Event, sent_time_ns: int | None = None) -> list[alert_pb2.Evidence]:
    """The event's visual units (ROI, boxed image) as evidence messages, cheapest first."""
    units = sorted((u for u in (event.roi, event.box) if u.size_bytes), key=lambda u: u.size_bytes)
    t = sent_time_ns or time.time_ns()
    return [
        alert_pb2.Evidence(event_id=event.event_id, camera_id=event.camera_id, unit=u, sent_time_ns=t) for u in units
    ]
