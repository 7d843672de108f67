"""One incident, one event: grouping consecutive triggered frames of the same incident.

A triggered frame continues an open incident of its camera when one of its
valid boxes overlaps one of the incident's latest boxes by IoU >= `iou_threshold`
and the incident was last seen at most `cooldown_s` ago (in stream time).
Otherwise it opens a new incident, which is the only moment an event is
written (and the MLLM invoked). Incidents not seen for `cooldown_s` close.
Boxes are tracked as they move, so a slowly moving incident stays one.

The open incidents of a camera are exported with :meth:`IncidentGrouper.snapshot` and put back with
:meth:`IncidentGrouper.restore`: gating saves them with the frame they are as of, so that a restart
continues an incident already alerted instead of opening (and alerting) it a second time.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.models.detections import Box, Detection


@dataclass
class Incident:
    """An open incident on one camera."""

    incident_id: int
    camera_id: str
    opened_at_s: float
    last_seen_s: float
    boxes: list[Box]
    frames: int = 1
    event_id: str = ""
    labels: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Assignment:
    """Result of feeding one triggered frame: the incident it belongs to and whether it is new."""

    incident: Incident
    opened: bool


class IncidentGrouper:
    """Groups triggered frames into incidents per camera (pure; stream time only)."""

    def __init__(self, iou_threshold: float = 0.3, cooldown_s: float = 5.0) -> None:
        if not 0.0 <= iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        if cooldown_s < 0:
            raise ValueError(f"cooldown_s must be >= 0, got {cooldown_s}")
        self._iou = iou_threshold
        self._cooldown = cooldown_s
        self._open: dict[str, list[Incident]] = {}
        self._ids = itertools.count(1)

    def snapshot(self, camera_id: str) -> list[dict[str, Any]]:
        """The open incidents of `camera_id` as plain data (JSON-ready), for :meth:`restore`."""
        return [
            {
                "incident_id": inc.incident_id,
                "opened_at_s": inc.opened_at_s,
                "last_seen_s": inc.last_seen_s,
                "boxes": [[b.x1, b.y1, b.x2, b.y2] for b in inc.boxes],
                "frames": inc.frames,
                "event_id": inc.event_id,
                "labels": sorted(inc.labels),
            }
            for inc in self._open.get(camera_id, [])
        ]

    def restore(self, camera_id: str, incidents: Sequence[dict[str, Any]]) -> None:
        """Replace the open incidents of `camera_id` with a :meth:`snapshot`; ValueError if it is malformed."""
        try:
            restored = [
                Incident(
                    incident_id=int(d["incident_id"]),
                    camera_id=camera_id,
                    opened_at_s=float(d["opened_at_s"]),
                    last_seen_s=float(d["last_seen_s"]),
                    boxes=[Box(*map(float, b)) for b in d["boxes"]],
                    frames=int(d["frames"]),
                    event_id=str(d["event_id"]),
                    labels=set(d["labels"]),
                )
                for d in incidents
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed incident snapshot for {camera_id}: {exc!r}") from exc
        self._open[camera_id] = restored
        if restored:
            # New incidents of this process never reuse a restored number.
            top = max(i.incident_id for i in restored)
            self._ids = itertools.count(max(top + 1, next(self._ids)))

    def open_incidents(self, camera_id: str) -> list[Incident]:
        """Incidents currently open on `camera_id`."""
        return list(self._open.get(camera_id, []))

    def expire(self, camera_id: str, now_s: float) -> list[Incident]:
        """Close and return incidents on `camera_id` not seen for longer than the cooldown."""
        incidents = self._open.get(camera_id, [])
        closed = [i for i in incidents if now_s - i.last_seen_s > self._cooldown]
        self._open[camera_id] = [i for i in incidents if now_s - i.last_seen_s <= self._cooldown]
        return closed

    def assign(self, camera_id: str, now_s: float, valid: Sequence[Detection]) -> Assignment:
        """Attach a triggered frame's D+_t to an open incident, or open a new one."""
        if not valid:
            raise ValueError("assign() needs the valid detections of a triggered frame")
        self.expire(camera_id, now_s)
        boxes = [d.box for d in valid]
        best: Incident | None = None
        best_iou = -1.0
        for inc in self._open.get(camera_id, []):
            iou = max(a.iou(b) for a in boxes for b in inc.boxes)
            if iou >= self._iou and iou > best_iou:
                best, best_iou = inc, iou
        if best is not None:
            best.last_seen_s = now_s
            best.boxes = boxes
            best.frames += 1
            best.labels.update(d.label for d in valid)
            return Assignment(best, opened=False)
        inc = Incident(
            incident_id=next(self._ids),
            camera_id=camera_id,
            opened_at_s=now_s,
            last_seen_s=now_s,
            boxes=boxes,
            labels={d.label for d in valid},
        )
        self._open.setdefault(camera_id, []).append(inc)
        return Assignment(inc, opened=True)
