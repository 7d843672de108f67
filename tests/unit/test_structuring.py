"""Event schema, DAT eq. 4 and the detector-prior structurer."""

import json

import jsonschema
import numpy as np
import pytest

from services.models.detections import Box, Detection
from services.models.structurers.base import (
    SCHEMA_PATH,
    DetectorPriorStructurer,
    InvalidModelOutput,
    StructuringRequest,
    check_eq4,
    event_schema,
    validate_event,
)

GOOD = {
    "event_type": "fall",
    "count": 1,
    "severity": "severe",
    "level": 1,
    "score": 0.8,
    "objects": [{"label": "fallen_person", "bbox": [10, 20, 300, 400]}],
    "summary": "one person fell",
}


def test_valid_event_passes() -> None:
    assert validate_event(json.dumps(GOOD), 0.5)["count"] == 1


@pytest.mark.parametrize(
    ("level", "score", "ok"),
    [(0, 0.0, True), (0, 0.49, True), (0, 0.5, False), (1, 0.5, True), (1, 1.0, True), (1, 0.49, False)],
)
def test_eq4_boundaries(level: int, score: float, ok: bool) -> None:
    if ok:
        check_eq4(level, score, 0.5)
    else:
        with pytest.raises(InvalidModelOutput, match=r"eq\. 4"):
            check_eq4(level, score, 0.5)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"score": 0.2}, "eq. 4"),
        ({"severity": "minor"}, "inconsistent"),
        ({"count": -1}, "schema"),
        ({"event_type": "explosion"}, "schema"),
        ({"extra": 1}, "schema"),
        ({"objects": [{"label": "person", "bbox": [1, 2, 3]}]}, "schema"),
    ],
)
def test_invalid_events_rejected(patch: dict, message: str) -> None:
    with pytest.raises(InvalidModelOutput, match=message):
        validate_event({**GOOD, **patch}, 0.5)


def test_box_corners_come_back_sorted() -> None:
    # Issue 10: corners given the other way round are the same box; sorted, then validated.
    got = validate_event({**GOOD, "objects": [{"label": "person", "bbox": [500, 40, 100, 10]}]}, 0.5)
    assert got["objects"][0]["bbox"] == [100, 10, 500, 40]
    with pytest.raises(InvalidModelOutput, match="schema"):
        validate_event({**GOOD, "objects": [{"label": "person", "bbox": [1001, 0, 100, 10]}]}, 0.5)


def test_the_schema_holds_eq4_as_an_anyof_at_the_given_gamma() -> None:
    # The repository file is the gamma = 0.5 form; event_schema() alone is the shape, without the rules.
    assert event_schema(0.5) == json.loads(SCHEMA_PATH.read_text())
    assert "anyOf" not in event_schema()
    low, high = event_schema(0.3)["anyOf"]
    assert low["properties"]["score"] == {"exclusiveMaximum": 0.3} and high["properties"]["score"] == {"minimum": 0.3}
    with pytest.raises(ValueError):
        event_schema(1.0)


@pytest.mark.parametrize("gamma", [0.3, 0.5])
def test_the_anyof_agrees_with_check_eq4_and_the_severity_rule(gamma: float) -> None:
    full = jsonschema.Draft202012Validator(event_schema(gamma))
    for level in (0, 1):
        for severity in ("none", "minor", "severe"):
            for score in (0.0, 0.2999, 0.3, 0.4999, 0.5, 0.7, 1.0):
                doc = {**GOOD, "level": level, "severity": severity, "score": score}
                try:
                    check_eq4(level, score, gamma)
                    rules_ok = (level == 1) == (severity == "severe")
                except InvalidModelOutput:
                    rules_ok = False
                assert full.is_valid(doc) == rules_ok, doc


def test_a_rule_violation_gets_the_rules_own_message() -> None:
    # Not the anyOf's "is not valid under any of the given schemas": eq. 4's wording, then the severity rule's.
    with pytest.raises(InvalidModelOutput, match=r"eq\. 4 violated: level 1 needs score in \[0\.5, 1\], got 0\.35"):
        validate_event({**GOOD, "score": 0.35}, 0.5)
    assert validate_event({**GOOD, "score": 0.35}, 0.3)["score"] == 0.35
    with pytest.raises(InvalidModelOutput, match="inconsistent: level 0 with severity 'severe'"):
        validate_event({**GOOD, "level": 0, "score": 0.1}, 0.5)


def test_unparsable_rejected() -> None:
    with pytest.raises(InvalidModelOutput, match="not JSON"):
        validate_event('{"event_type": "fall"', 0.5)
    with pytest.raises(InvalidModelOutput, match="object"):
        validate_event("[1, 2]", 0.5)


def _req(dets: list[Detection]) -> StructuringRequest:
    return StructuringRequest(np.zeros((100, 200, 3), np.uint8), dets, width=200, height=100)


@pytest.mark.parametrize("gamma", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("p", [0.0, 0.25, 0.999, 1.0])
def test_detector_prior_keeps_eq4(gamma: float, p: float) -> None:
    s = DetectorPriorStructurer("test-detector", gamma=gamma)
    fall = s.structure(_req([Detection(Box(0, 0, 100, 50), 1, "Fall", p)]))
    assert fall.level == 1 and gamma <= fall.score <= 1
    normal = s.structure(_req([Detection(Box(0, 0, 100, 50), 0, "Normal", p)]))
    assert normal.level == 0 and 0 <= normal.score < gamma


def test_detector_prior_fields() -> None:
    s = DetectorPriorStructurer("det", gamma=0.5)
    ev = s.structure(
        _req(
            [
                Detection(Box(0, 0, 100, 50), 1, "Fall", 0.9),
                Detection(Box(100, 50, 200, 100), 0, "Normal", 0.8),
            ]
        )
    )
    assert ev.data["event_type"] == "fall" and ev.data["count"] == 1 and ev.data["severity"] == "severe"
    assert ev.data["objects"][0] == {"label": "fallen_person", "bbox": [0, 0, 500, 500]}
    assert ev.producer.kind == "detector-prior" and not ev.producer.random_init
    assert json.loads(ev.to_json_bytes()) == ev.data
