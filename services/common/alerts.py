"""The cloud alert topics' records as plain data: what `vigil alerts`, `vigil run` and the console show."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.json_format import MessageToDict

from vigil.alert.v1 import alert_pb2


def alert_record(alert: alert_pb2.Alert, delivered_ms: float | None = None) -> dict[str, Any]:
    """An alert as one JSON object; `event` is the schema-valid structured event."""
    rec: dict[str, Any] = {
        "type": "alert",
        "event_id": alert.event_id,
        "camera_id": alert.camera_id,
        "frame_seq": alert.frame_seq,
        "pts_s": round(alert.pts_s, 3),
        "level": alert.level,
        "score": round(alert.score, 4),
        "event": json.loads(alert.event_json),
        "producer": MessageToDict(alert.producer, preserving_proto_field_name=True),
        "roi_bytes": alert.roi_bytes,
        "box_bytes": alert.box_bytes,
    }
    if delivered_ms is not None:
        rec["frame_to_alert_ms"] = round(delivered_ms, 1)
    return rec
