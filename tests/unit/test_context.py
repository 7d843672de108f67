"""Which of the COCO detector's objects are involved in an incident (pure geometry)."""

from __future__ import annotations

import pytest

from services.models.context import describe_counts, scene_context
from services.models.detections import Box, Detection


def det(label: str, box: Box, conf: float = 0.8) -> Detection:
    return Detection(box, 0, label, conf)


ACCIDENT = det("accident", Box(100, 100, 200, 200))


def test_overlapping_and_nearby_objects_are_involved() -> None:
    inside = det("car", Box(120, 120, 180, 180))
    touching_margin = det("truck", Box(205, 110, 260, 150))  # 5 px right of the box, inside a 25 px margin
    far = det("car", Box(400, 400, 450, 450))
    ctx = scene_context([ACCIDENT], [far, inside, touching_margin], margin=0.25)
    assert set(ctx.involved) == {inside, touching_margin}
    assert len(ctx.in_view) == 3
    assert ctx.counts() == {"car": 2, "truck": 1}
    assert scene_context([ACCIDENT], [touching_margin], margin=0.0).involved == ()


def test_only_road_classes() -> None:
    person = det("person", Box(110, 110, 150, 150))
    ctx = scene_context([ACCIDENT], [det("dog", Box(110, 110, 150, 150)), det("traffic light", ACCIDENT.box), person])
    assert ctx.in_view == (person,) and ctx.involved == (person,)


def test_describe_counts() -> None:
    assert describe_counts({"car": 3, "person": 2, "bus": 1}) == "3 car, 2 person, 1 bus"
    assert describe_counts({}) == ""


def test_negative_margin_rejected() -> None:
    with pytest.raises(ValueError, match="margin"):
        scene_context([ACCIDENT], [], margin=-1)
