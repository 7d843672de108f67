"""One incident, one event: grouping triggered frames."""

import pytest

from services.gating.incidents import IncidentGrouper
from services.models.detections import Box, Detection


def d(x: float) -> list[Detection]:
    return [Detection(Box(x, 0, x + 100, 100), 1, "Fall", 0.9)]


def test_consecutive_overlapping_triggers_are_one_incident() -> None:
    g = IncidentGrouper(iou_threshold=0.3, cooldown_s=2.0)
    first = g.assign("c", 0.0, d(0))
    assert first.opened
    for i in range(1, 20):  # drifts 10 px per frame: still the same incident
        a = g.assign("c", i * 0.2, d(i * 10))
        assert not a.opened and a.incident is first.incident
    assert first.incident.frames == 20


def test_far_away_box_is_a_new_incident() -> None:
    g = IncidentGrouper()
    g.assign("c", 0.0, d(0))
    assert g.assign("c", 0.1, d(500)).opened
    assert len(g.open_incidents("c")) == 2


def test_cooldown_closes_incident() -> None:
    g = IncidentGrouper(cooldown_s=1.0)
    g.assign("c", 0.0, d(0))
    assert not g.assign("c", 1.0, d(0)).opened
    assert g.assign("c", 2.5, d(0)).opened


def test_cameras_are_independent() -> None:
    g = IncidentGrouper()
    g.assign("a", 0.0, d(0))
    assert g.assign("b", 0.0, d(0)).opened


def test_expire_returns_closed() -> None:
    g = IncidentGrouper(cooldown_s=1.0)
    g.assign("c", 0.0, d(0))
    assert [i.incident_id for i in g.expire("c", 5.0)] == [1]
    assert g.open_incidents("c") == []


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        IncidentGrouper(iou_threshold=1.5)
    with pytest.raises(ValueError):
        IncidentGrouper().assign("c", 0.0, [])
