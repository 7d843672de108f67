"""Incident-grouping state across a restart: snapshot/restore and its per-camera file store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.bus import Message
from services.gating.checkpoint import CameraCheckpoint, FramePosition, IncidentStore
from services.gating.incidents import IncidentGrouper
from services.models.detections import Box, Detection


def d(x: float) -> list[Detection]:
    return [Detection(Box(x, 0, x + 100, 100), 0, "accident", 0.9)]


def test_restored_grouper_continues_the_incident_instead_of_opening_another() -> None:
    before = IncidentGrouper(cooldown_s=2.0)
    first = before.assign("c", 0.0, d(0)).incident
    first.event_id = "e-1"
    before.assign("c", 0.5, d(10))
    saved = json.loads(json.dumps(before.snapshot("c")))  # through JSON, as the store keeps it

    after = IncidentGrouper(cooldown_s=2.0)
    after.restore("c", saved)
    a = after.assign("c", 1.0, d(20))
    assert not a.opened and a.incident.event_id == "e-1" and a.incident.frames == 3
    # A new incident of the restarted process never reuses a restored number.
    assert after.assign("c", 1.0, d(900)).incident.incident_id > first.incident_id
    assert after.snapshot("other") == []


def test_restore_rejects_a_malformed_snapshot() -> None:
    with pytest.raises(ValueError, match="malformed incident snapshot for c"):
        IncidentGrouper().restore("c", [{"incident_id": 1}])


def test_position_covers_the_frame_and_earlier_ones_of_its_partition() -> None:
    pos = FramePosition("frames", 1, 10, 500)
    msg = Message("frames", 1, 10, None, b"")
    assert pos.covers(msg, 500) and pos.covers(Message("frames", 1, 3, None, b""), 400)
    assert not pos.covers(Message("frames", 1, 11, None, b""), 600)
    assert not pos.covers(Message("frames", 0, 3, None, b""), 400)
    assert not pos.covers(Message("other", 1, 3, None, b""), 400)
    # A lower offset but a later frame: the broker lost its log and offsets began again.
    assert not pos.covers(Message("frames", 1, 3, None, b""), 900)
    assert FramePosition.of(msg, 500) == pos


def test_store_round_trips_each_camera_and_sets_an_unreadable_file_aside(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path / "state")
    cp = CameraCheckpoint("rtsp/cam 1", FramePosition("frames", 0, 41, 1), 12.5, [{"incident_id": 3}])
    store.save(cp)
    store.save(CameraCheckpoint("b", FramePosition("frames", 0, 7, 2), 1.0, []))
    assert store.load("rtsp/cam 1") == cp
    assert store.load("b") is not None and store.load("missing") is None
    path = next((tmp_path / "state").glob("incidents-rtsp*.json"))
    path.write_text("{ half a file")
    assert store.load("rtsp/cam 1") is None
    assert not path.exists() and path.with_suffix(".unreadable").exists()
