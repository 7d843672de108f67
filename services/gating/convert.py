"""Domain <-> protobuf conversion for gating (the only place that knows both)."""

from __future__ import annotations

from services.gating.pipeline import GatedEvent
from services.models.detections import Detection
from services.models.structurers.base import ProducerInfo
from vigil.detection.v1 import detection_pb2
from vigil.event.v1 import event_pb2


def detection_to_proto(d: Detection) -> detection_pb2.Detection:
    """Domain detection -> proto."""
    return detection_pb2.Detection(
        box=detection_pb2.BoundingBox(x1=d.box.x1, y1=d.box.y1, x2=d.box.x2, y2=d.box.y2),
        class_id=d.class_id,
        label=d.label,
        confidence=d.confidence,
    )


def producer_to_proto(p: ProducerInfo) -> event_pb2.Producer:
    """Domain producer -> proto."""
    return event_pb2.Producer(kind=p.kind, name=p.name, random_init=p.random_init, note=p.note, adapter=p.adapter)


def event_to_proto(e: GatedEvent) -> event_pb2.Event:
    """A gated event with its three evidence units and their real encoded sizes (c_json, c_roi, c_box)."""
    js = e.structured.to_json_bytes()
    return event_pb2.Event(
        event_id=e.event_id,
        camera_id=e.camera_id,
        frame_seq=e.frame_seq,
        pts_s=e.pts_s,
        capture_time_ns=e.capture_time_ns,
        created_time_ns=e.created_time_ns,
        level=e.structured.level,
        score=e.structured.score,
        trigger_score=e.gate.trigger_score,
        detections=[detection_to_proto(d) for d in e.detections],
        producer=producer_to_proto(e.structured.producer),
        json=event_pb2.EvidenceUnit(
            kind=event_pb2.EVIDENCE_KIND_JSON, size_bytes=len(js), content_type="application/json", payload=js
        ),
        roi=event_pb2.EvidenceUnit(
            kind=event_pb2.EVIDENCE_KIND_ROI,
            size_bytes=len(e.evidence.roi_jpeg),
            content_type="image/jpeg",
            payload=e.evidence.roi_jpeg,
        ),
        box=event_pb2.EvidenceUnit(
            kind=event_pb2.EVIDENCE_KIND_BOX,
            size_bytes=len(e.evidence.box_jpeg),
            content_type="image/jpeg",
            payload=e.evidence.box_jpeg,
        ),
        stage_ms=e.stage_ms,
    )
