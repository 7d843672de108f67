"""Tables 1-2's metrics and the evaluation set's targets, on hand-made predictions (pure logic)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.gating.training.dataset import DatasetError, LabelledFrame
from services.gating.training.structurer_eval import (
    Example,
    Prediction,
    markdown_tables,
    match_boxes,
    rule_ok,
    score,
    target_event,
    violates_bounds,
    yolo_to_corners,
)

GAMMA = 0.5


def frame(label: str, boxes: tuple[tuple[float, float, float, float], ...] | None) -> LabelledFrame:
    return LabelledFrame(Path("frames/c/x.jpg"), "c", 1, label, boxes)


def event(
    count: int, severity: str, boxes: list[list[int]], level: int | None = None, s: float | None = None
) -> dict[str, Any]:
    level = (1 if severity == "severe" else 0) if level is None else level
    return {
        "event_type": "accident" if level else "other",
        "count": count,
        "severity": severity,
        "level": level,
        "score": (0.9 if level else 0.1) if s is None else s,
        "objects": [{"label": "accident", "bbox": b} for b in boxes],
        "summary": "x",
    }


def test_targets_come_from_the_labels() -> None:
    box = (0.5, 0.5, 0.2, 0.4)
    assert yolo_to_corners(box) == [400, 300, 600, 700]
    acc = target_event(frame("accident", (box, (0.1, 0.1, 0.4, 0.4))), GAMMA)
    assert (acc["level"], acc["severity"], acc["count"], acc["event_type"]) == (1, "severe", 2, "accident")
    assert acc["objects"][0] == {"label": "accident", "bbox": [400, 300, 600, 700]}
    # A box past the frame's edge is clipped into the schema's 0..1000.
    assert acc["objects"][1]["bbox"] == [0, 0, 300, 300]
    normal = target_event(frame("normal", None), GAMMA)
    assert (normal["level"], normal["severity"], normal["count"], normal["objects"]) == (0, "none", 0, [])
    assert not Example(frame("accident", None), target_event(frame("accident", None), GAMMA)).count_known


def test_a_frame_whose_labels_make_no_valid_event_is_named() -> None:
    many = tuple((0.5, 0.5, 0.1, 0.1) for _ in range(21))
    with pytest.raises(DatasetError, match=r"x\.jpg: its labels give no valid target event"):
        target_event(frame("accident", many), GAMMA)


def test_boxes_match_one_to_one() -> None:
    a, b = [0, 0, 100, 100], [200, 200, 300, 300]
    assert match_boxes([a, b], [a]) == [1.0, 0.0]
    assert match_boxes([a], [[50, 0, 150, 100], a]) == [1.0]
    assert match_boxes([a], []) == [0.0]


def test_rules_and_bounds() -> None:
    assert rule_ok(event(1, "severe", [[0, 0, 10, 10]]), GAMMA)
    assert not rule_ok(event(1, "severe", [[0, 0, 10, 10]], s=0.2), GAMMA)  # eq. 4
    assert not rule_ok(event(1, "minor", [], level=1), GAMMA)  # level 1 <=> severe
    assert not rule_ok(event(1, "severe", [[10, 0, 0, 10]]), GAMMA)  # x1 > x2
    assert not violates_bounds(event(1, "severe", [[0, 0, 1000, 1000]]))
    assert violates_bounds(event(1, "severe", [[0, 0, 1001, 10]]))
    assert violates_bounds({**event(1, "severe", []), "score": 1.5})
    assert violates_bounds({**event(21, "severe", [])})


def test_score_on_hand_made_predictions() -> None:
    box = (0.5, 0.5, 0.2, 0.4)  # [400, 300, 600, 700]
    acc = Example(frame("accident", (box,)), target_event(frame("accident", (box,)), GAMMA))
    unboxed = Example(frame("accident", None), target_event(frame("accident", None), GAMMA))
    normal = Example(frame("normal", None), target_event(frame("normal", None), GAMMA))
    right = event(1, "severe", [[400, 300, 600, 700]])
    half = event(2, "severe", [[400, 300, 600, 500]])  # IoU 0.5, count off by one
    predictions = [
        Prediction(acc, json.dumps(right), right),
        Prediction(acc, json.dumps(half), half),
        Prediction(unboxed, "not json", None, "not JSON"),  # missed: no event
        Prediction(normal, json.dumps(event(1, "severe", [], s=0.2)), None, "eq. 4"),  # parsed, off-rule
    ]
    m = score(predictions, GAMMA)
    v = m.values
    assert m.counts == {"n_frames": 4, "n_count": 3, "n_boxes": 2, "n_parsed": 3}
    assert v["count_em"] == round(2 / 3, 4) and v["count_mae"] == round(1 / 3, 4)
    # Severe vs not: the two accident frames right, the unboxed one missed, the normal one (no valid event) right.
    assert v["sev_acc"] == 0.75 and v["sev_f1"] == round(2 * 2 / (2 * 2 + 0 + 1), 4)
    assert v["bbox_miou"] == 0.75 and v["recall_at_0_5"] == 1.0
    assert (v["parse"], v["schema"], v["rule"], v["viol"]) == (0.75, 0.75, 0.5, 0.0)
    row = {"structurer": "detector-prior:x", "input": "boxed", "tuning": "n/a", "random_init": True, **v}
    tables = markdown_tables([row])
    assert "| detector-prior:x (RANDOM weights: meaningless) | boxed | n/a | 66.67% | 0.3333 |" in tables
    assert "Table 2: structured output compliance" in tables
