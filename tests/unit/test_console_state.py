"""The console's pure state: de-duplication by event id, evidence on arrival (before or after its alert),
expiry to "not sent", per-camera figures, bounded memory and the change log SSE resumes from."""

from __future__ import annotations

import json

import pytest

from services.console.state import ConsoleState, MalformedRecord, decode_alert, decode_evidence
from vigil.alert.v1 import alert_pb2
from vigil.event.v1 import event_pb2

S = 1_000_000_000
T0 = 1_800_000_000 * S


def alert(event_id: str = "e1", camera: str = "cam0", capture_ns: int = T0, roi: int = 10, box: int = 20) -> bytes:
    event = {"event_type": "accident", "count": 1, "severity": "severe", "level": 1, "score": 0.7, "objects": []}
    return alert_pb2.Alert(
        event_id=event_id,
        camera_id=camera,
        capture_time_ns=capture_ns,
        created_time_ns=capture_ns + S // 2,
        sent_time_ns=capture_ns + S,
        level=1,
        score=0.7,
        event_json=json.dumps({**event, "summary": "x"}),
        roi_bytes=roi,
        box_bytes=box,
    ).SerializeToString()


def evidence(event_id: str = "e1", kind: event_pb2.EvidenceKind = event_pb2.EVIDENCE_KIND_ROI) -> bytes:
    unit = event_pb2.EvidenceUnit(kind=kind, payload=b"\xff\xd8jpeg", content_type="image/jpeg")
    msg = alert_pb2.Evidence(event_id=event_id, camera_id="cam0", unit=unit, sent_time_ns=T0 + 2 * S)
    return msg.SerializeToString()


def test_alerts_are_deduplicated_by_event_id() -> None:
    state = ConsoleState()
    assert state.add_alert(decode_alert(alert(), T0 + S))
    assert not state.add_alert(decode_alert(alert(), T0 + 2 * S))
    assert [v.event_id for v in state.recent()] == ["e1"] and state.duplicates == 1


def test_evidence_attaches_on_arrival_whichever_comes_first() -> None:
    state = ConsoleState()
    # The box arrives before its alert (two topics, no order between them): it waits for it.
    assert not state.add_evidence(*decode_evidence(evidence(kind=event_pb2.EVIDENCE_KIND_BOX), T0 + S))
    state.add_alert(decode_alert(alert(), T0 + S))
    view = state.alert("e1")
    assert view is not None and view.evidence_state == "pending" and view.best_image == "box"
    assert state.add_evidence(*decode_evidence(evidence(), T0 + 3 * S))
    assert view.evidence_state == "complete"
    assert view.delays_ms() == {
        "frame_to_alert_ms": 1000.0,
        "uplink_queue_ms": 500.0,
        "frame_to_box_ms": 1000.0,
        "frame_to_roi_ms": 3000.0,
    }
    assert not state.add_evidence(*decode_evidence(evidence(), T0 + 4 * S)), "a duplicate unit changes nothing"


def test_missing_evidence_turns_not_sent_after_the_deadline() -> None:
    state = ConsoleState(evidence_deadline_s=5.0)
    state.add_alert(decode_alert(alert("e1"), T0 + S))
    state.add_alert(decode_alert(alert("e2"), T0 + S))
    state.add_evidence(*decode_evidence(evidence("e2"), T0 + 2 * S))
    assert state.sweep(T0 + 5 * S) == []
    assert sorted(state.sweep(T0 + 7 * S)) == ["e1", "e2"]
    assert state.alert("e1").evidence_state == "not sent"  # type: ignore[union-attr]
    assert state.alert("e2").evidence_state == "partial"  # type: ignore[union-attr]
    assert state.sweep(T0 + 9 * S) == [], "expiry happens once"


def test_an_alert_with_no_evidence_at_the_edge_is_complete() -> None:
    state = ConsoleState()
    state.add_alert(decode_alert(alert(roi=0, box=0), T0))
    assert state.alert("e1").evidence_state == "complete"  # type: ignore[union-attr]


def test_store_is_bounded_and_newest_first() -> None:
    state = ConsoleState(max_alerts=3)
    for i in range(5):
        state.add_alert(decode_alert(alert(f"e{i}", capture_ns=T0 + i * S), T0 + i * S))
    assert [v.event_id for v in state.recent()] == ["e4", "e3", "e2"]
    assert state.alert("e0") is None


def test_cameras_count_alerts_today_and_go_silent() -> None:
    state = ConsoleState()
    state.add_alert(decode_alert(alert("a", "door"), T0))
    state.add_alert(decode_alert(alert("b", "door"), T0))
    state.frame_seen("gate", T0 + 30 * S)
    cams = {c.camera_id: c for c in state.cameras()}
    assert cams["door"].alerts_today == 2 and cams["gate"].alerts_today == 0
    assert cams["door"].silent(T0 + 61 * S, 60.0) and not cams["gate"].silent(T0 + 61 * S, 60.0)


def test_changes_since_gives_each_row_once_and_asks_for_a_reload_when_too_far_behind() -> None:
    state = ConsoleState(max_changes=6)
    state.add_alert(decode_alert(alert("e1"), T0))  # seq 1 alert, 2 cameras
    state.add_evidence(*decode_evidence(evidence("e1"), T0))  # seq 3
    changes = state.changes_since(0)
    assert changes is not None
    assert [(c.kind, c.event_id) for c in changes] == [("cameras", ""), ("alert", "e1")]
    assert changes[-1].seq == state.seq == 3
    assert state.changes_since(3) == []
    for i in range(5):
        state.add_alert(decode_alert(alert(f"x{i}"), T0))
    assert state.changes_since(0) is None, "the log no longer reaches back: the page reloads"


@pytest.mark.parametrize(
    "value",
    [
        b"\xff\xfe not a proto",
        alert_pb2.Alert(camera_id="cam0").SerializeToString(),
        alert_pb2.Alert(event_id="e", camera_id="c", event_json="[1]").SerializeToString(),
        alert_pb2.Alert(event_id="e", camera_id="c", event_json="{not json").SerializeToString(),
    ],
)
def test_malformed_alerts_are_refused_with_a_reason(value: bytes) -> None:
    with pytest.raises(MalformedRecord):
        decode_alert(value, T0)


def test_evidence_without_an_image_kind_is_refused() -> None:
    with pytest.raises(MalformedRecord):
        decode_evidence(evidence(kind=event_pb2.EVIDENCE_KIND_JSON), T0)
