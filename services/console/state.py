"""What the console shows, as pure state: recent alerts keyed by event id, evidence attached on arrival,
per-camera figures, and a numbered log of changes that Server-Sent Events replay after a reconnect.

No transport here: the consumer feeds decoded records in, the HTTP layer reads views out. Every method
takes the time it should use (`now_ns`) so tests drive the clock.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.json_format import MessageToDict

from vigil.alert.v1 import alert_pb2
from vigil.event.v1 import event_pb2

# The evidence kinds the uplink sends after an alert, in the order DAT sends them (ROI crop first).
EVIDENCE_KINDS = ("roi", "box")
_KIND_NAMES = {event_pb2.EVIDENCE_KIND_ROI: "roi", event_pb2.EVIDENCE_KIND_BOX: "box"}


class MalformedRecord(ValueError):
    """A record on the alert or evidence topic that cannot be shown: undecodable or missing its event id."""


@dataclass(frozen=True)
class EvidenceImage:
    """One evidence unit as received: the JPEG and when it was sent and seen."""

    kind: str
    jpeg: bytes
    content_type: str
    sent_time_ns: int
    received_ns: int


@dataclass
class AlertView:
    """One alert and whatever evidence has arrived for it."""

    event_id: str
    camera_id: str
    frame_seq: int
    pts_s: float
    capture_time_ns: int
    created_time_ns: int
    sent_time_ns: int
    level: int
    score: float
    event: dict[str, Any]
    producer: dict[str, Any]
    roi_bytes: int
    box_bytes: int
    received_ns: int
    evidence: dict[str, EvidenceImage] = field(default_factory=dict)
    # Set once the evidence deadline passed with some unit still missing: that unit was not sent.
    expired: bool = False

    @property
    def expected_kinds(self) -> tuple[str, ...]:
        """The evidence kinds that exist at the edge for this alert (a size of 0 = none to send)."""
        sizes = {"roi": self.roi_bytes, "box": self.box_bytes}
        return tuple(k for k in EVIDENCE_KINDS if sizes[k])

    @property
    def evidence_state(self) -> str:
        """'complete', 'pending' (some still expected), 'partial' (expired with some) or 'not sent' (expired, none)."""
        missing = [k for k in self.expected_kinds if k not in self.evidence]
        if not missing:
            return "complete"
        if not self.expired:
            return "pending"
        return "partial" if self.evidence else "not sent"

    @property
    def best_image(self) -> str | None:
        """The evidence kind to show in the list: the boxed image when it is here, else the ROI crop."""
        for kind in ("box", "roi"):
            if kind in self.evidence:
                return kind
        return None

    def delays_ms(self) -> dict[str, float]:
        """Delivery delays: frame capture to the alert's arrival here, and to each evidence unit's."""
        out = {"frame_to_alert_ms": (self.received_ns - self.capture_time_ns) / 1e6}
        if self.sent_time_ns and self.created_time_ns:
            out["uplink_queue_ms"] = (self.sent_time_ns - self.created_time_ns) / 1e6
        for kind, unit in self.evidence.items():
            out[f"frame_to_{kind}_ms"] = (unit.received_ns - self.capture_time_ns) / 1e6
        return {k: round(v, 1) for k, v in out.items()}

    def as_json(self) -> dict[str, Any]:
        """The structured record the detail page shows (no image bytes)."""
        return {
            "event_id": self.event_id,
            "camera_id": self.camera_id,
            "frame_seq": self.frame_seq,
            "pts_s": round(self.pts_s, 3),
            "capture_time_ns": self.capture_time_ns,
            "level": self.level,
            "score": round(self.score, 4),
            "event": self.event,
            "producer": self.producer,
            "roi_bytes": self.roi_bytes,
            "box_bytes": self.box_bytes,
            "evidence": {k: {"bytes": len(v.jpeg), "sent_time_ns": v.sent_time_ns} for k, v in self.evidence.items()},
            "evidence_state": self.evidence_state,
            "delays_ms": self.delays_ms(),
        }


@dataclass
class CameraStats:
    """One camera as the console saw it."""

    camera_id: str
    last_frame_ns: int = 0
    last_alert_ns: int = 0
    alerts_today: int = 0
    day: str = ""

    def silent(self, now_ns: int, silent_after_s: float) -> bool:
        """No frame (or, where frames are not seen, no alert) for `silent_after_s`."""
        last = max(self.last_frame_ns, self.last_alert_ns)
        return not last or now_ns - last > silent_after_s * 1e9


@dataclass(frozen=True)
class Change:
    """One numbered change the page must apply: an alert row (new or updated) or the cameras table."""

    seq: int
    kind: str  # "alert" | "cameras"
    event_id: str = ""


def decode_alert(value: bytes, received_ns: int) -> AlertView:
    """An Alert record as a view; MalformedRecord when it is not one a person can be shown."""
    try:
        alert = alert_pb2.Alert.FromString(value)
        event = json.loads(alert.event_json) if alert.event_json else {}
    except Exception as exc:  # protobuf's DecodeError, a JSON error: both mean the record is unusable
        raise MalformedRecord(f"not an Alert: {type(exc).__name__}: {exc}") from exc
    if not alert.event_id or not alert.camera_id:
        raise MalformedRecord("an Alert without event_id or camera_id")
    if not isinstance(event, dict):
        raise MalformedRecord("the Alert's event_json is not a JSON object")
    return AlertView(
        event_id=alert.event_id,
        camera_id=alert.camera_id,
        frame_seq=alert.frame_seq,
        pts_s=alert.pts_s,
        capture_time_ns=alert.capture_time_ns,
        created_time_ns=alert.created_time_ns,
        sent_time_ns=alert.sent_time_ns,
        level=alert.level,
        score=alert.score,
        event=event,
        producer=MessageToDict(alert.producer, preserving_proto_field_name=True),
        roi_bytes=alert.roi_bytes,
        box_bytes=alert.box_bytes,
        received_ns=received_ns,
    )


def decode_evidence(value: bytes, received_ns: int) -> tuple[str, EvidenceImage]:
    """An Evidence record as (event id, image); MalformedRecord when it is not usable."""
    try:
        evidence = alert_pb2.Evidence.FromString(value)
    except Exception as exc:
        raise MalformedRecord(f"not an Evidence: {type(exc).__name__}: {exc}") from exc
    kind = _KIND_NAMES.get(evidence.unit.kind)
    if not evidence.event_id or kind is None or not evidence.unit.payload:
        raise MalformedRecord("an Evidence without event_id, an image kind (ROI or box) or a payload")
    return evidence.event_id, EvidenceImage(
        kind=kind,
        jpeg=evidence.unit.payload,
        content_type=evidence.unit.content_type or "image/jpeg",
        sent_time_ns=evidence.sent_time_ns,
        received_ns=received_ns,
    )


def _day(ns: int) -> str:
    """The UTC calendar day of a Unix time in ns ("alerts today" counts per UTC day)."""
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).date().isoformat()


class ConsoleState:
    """The bounded store the page is drawn from; thread-safe (consumer threads write, HTTP handlers read).

    - `max_alerts` most recent alerts by arrival; the oldest is forgotten (with its evidence) beyond that.
    - Evidence that arrives before its alert (two topics, no order between them) waits, bounded, for it.
    - An alert whose evidence has not all arrived `evidence_deadline_s` after it was sent is marked expired:
      the uplink drops a visual unit that would miss its deadline (D_vis), so it will not come.
    - Every change gets a sequence number; `changes_since(seq)` is what a reconnecting page missed.
    """

    def __init__(
        self,
        *,
        max_alerts: int = 500,
        max_orphan_evidence: int = 200,
        evidence_deadline_s: float = 5.0,
        max_changes: int = 2000,
    ) -> None:
        self.max_alerts = max_alerts
        self.max_orphan_evidence = max_orphan_evidence
        self.evidence_deadline_s = evidence_deadline_s
        self._alerts: OrderedDict[str, AlertView] = OrderedDict()
        self._orphans: OrderedDict[str, list[EvidenceImage]] = OrderedDict()
        self._cameras: dict[str, CameraStats] = {}
        self._changes: deque[Change] = deque(maxlen=max_changes)
        self._seq = 0
        self.duplicates = 0
        self.cond = threading.Condition()
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call `listener` (quick, thread-safe: e.g. loop.call_soon_threadsafe) after every change."""
        with self.cond:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        """Stop calling `listener`."""
        with self.cond:
            if listener in self._listeners:
                self._listeners.remove(listener)

    # -- writes ----------------------------------------------------------------------------------

    def add_alert(self, view: AlertView) -> bool:
        """Store a new alert (False for a duplicate event id: redelivery or a second uplink attempt)."""
        with self.cond:
            if view.event_id in self._alerts:
                self.duplicates += 1
                return False
            self._alerts[view.event_id] = view
            for unit in self._orphans.pop(view.event_id, []):
                view.evidence.setdefault(unit.kind, unit)
            while len(self._alerts) > self.max_alerts:
                self._alerts.popitem(last=False)
            cam = self._camera(view.camera_id)
            cam.last_alert_ns = max(cam.last_alert_ns, view.capture_time_ns or view.received_ns)
            day = _day(view.received_ns)
            if cam.day != day:
                cam.day, cam.alerts_today = day, 0
            cam.alerts_today += 1
            self._changed("alert", view.event_id)
            self._changed("cameras")
            return True

    def add_evidence(self, event_id: str, unit: EvidenceImage) -> bool:
        """Attach evidence to its alert (True when the page changes); kept aside if the alert is not here yet."""
        with self.cond:
            view = self._alerts.get(event_id)
            if view is None:
                units = self._orphans.setdefault(event_id, [])
                if all(u.kind != unit.kind for u in units):
                    units.append(unit)
                while len(self._orphans) > self.max_orphan_evidence:
                    self._orphans.popitem(last=False)
                return False
            if unit.kind in view.evidence:
                self.duplicates += 1
                return False
            view.evidence[unit.kind] = unit
            self._changed("alert", event_id)
            return True

    def frame_seen(self, camera_id: str, capture_ns: int) -> None:
        """A camera's frame went by (embedded mode sees the frames topic; the cloud sees only alerts)."""
        with self.cond:
            cam = self._camera(camera_id)
            was_new = cam.last_frame_ns == 0
            cam.last_frame_ns = max(cam.last_frame_ns, capture_ns)
            if was_new:
                self._changed("cameras")

    def sweep(self, now_ns: int) -> list[str]:
        """Mark alerts whose evidence deadline passed as expired; returns their event ids (their rows change)."""
        with self.cond:
            expired = []
            for view in self._alerts.values():
                if view.expired or view.evidence_state == "complete":
                    continue
                sent = view.sent_time_ns or view.received_ns
                if now_ns - max(sent, view.received_ns) > self.evidence_deadline_s * 1e9:
                    view.expired = True
                    expired.append(view.event_id)
                    self._changed("alert", view.event_id)
            return expired

    # -- reads -----------------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """The number of the latest change."""
        with self.cond:
            return self._seq

    def alert(self, event_id: str) -> AlertView | None:
        """One alert, or None when unknown (or forgotten)."""
        with self.cond:
            return self._alerts.get(event_id)

    def recent(self, limit: int | None = None, camera_id: str | None = None) -> list[AlertView]:
        """Alerts newest first (by frame capture time, then arrival)."""
        with self.cond:
            views = [v for v in self._alerts.values() if camera_id is None or v.camera_id == camera_id]
        views.sort(key=lambda v: (v.capture_time_ns, v.received_ns), reverse=True)
        return views[:limit] if limit is not None else views

    def cameras(self) -> list[CameraStats]:
        """Every camera seen, by id."""
        with self.cond:
            return [
                CameraStats(c.camera_id, c.last_frame_ns, c.last_alert_ns, c.alerts_today, c.day)
                for c in sorted(self._cameras.values(), key=lambda c: c.camera_id)
            ]

    def changes_since(self, seq: int) -> list[Change] | None:
        """The changes after `seq`, one per row (latest wins); None when some are no longer kept (reload)."""
        with self.cond:
            if seq >= self._seq:
                return []
            if not self._changes or self._changes[0].seq > seq + 1:
                return None
            return _latest_per_target(c for c in self._changes if c.seq > seq)

    def wait_for_change(self, seq: int, timeout_s: float) -> bool:
        """Block until a change after `seq` (True) or the timeout (False)."""
        with self.cond:
            return self.cond.wait_for(lambda: self._seq > seq, timeout=timeout_s)

    # -- internals -------------------------------------------------------------------------------

    def _camera(self, camera_id: str) -> CameraStats:
        cam = self._cameras.get(camera_id)
        if cam is None:
            cam = self._cameras[camera_id] = CameraStats(camera_id)
        return cam

    def _changed(self, kind: str, event_id: str = "") -> None:
        self._seq += 1
        self._changes.append(Change(self._seq, kind, event_id))
        self.cond.notify_all()
        for listener in self._listeners:
            listener()


def _latest_per_target(changes: Iterable[Change]) -> list[Change]:
    """One change per row (the last): a page that missed three updates of a row draws it once."""
    latest: dict[tuple[str, str], Change] = {}
    for c in changes:
        latest.pop((c.kind, c.event_id), None)
        latest[(c.kind, c.event_id)] = c
    return sorted(latest.values(), key=lambda c: c.seq)
