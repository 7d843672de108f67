"""FrameGater logic with a scripted detector and structurer (pure logic; the real models are in integration)."""

from __future__ import annotations

import numpy as np
import pytest

from services.gating.pipeline import FrameGater, FrameInput, GatingParams, event_id_for
from services.models.detections import Box, Detection
from services.models.detectors.base import Detector
from services.models.structurers.base import (
    DetectorPriorStructurer,
    EventStructurer,
    InvalidModelOutput,
    ProducerInfo,
    StructuredEvent,
    StructuringRequest,
)


class ScriptedDetector(Detector):
    """Returns the next scripted detection list on each call."""

    def __init__(self, script: list[list[Detection]]) -> None:
        self.script = list(script)
        self.calls = 0

    @property
    def name(self) -> str:
        return "scripted"

    @property
    def class_names(self) -> dict[int, str]:
        return {0: "Normal", 1: "Fall"}

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        self.calls += 1
        return self.script.pop(0) if self.script else []


class FlakyStructurer(EventStructurer):
    """Fails validation `failures` times, then delegates to the detector-prior structurer."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.inner = DetectorPriorStructurer("scripted")

    @property
    def producer(self) -> ProducerInfo:
        return ProducerInfo(kind="flaky", name="test")

    def structure(self, request: StructuringRequest) -> StructuredEvent:
        if self.failures:
            self.failures -= 1
            raise InvalidModelOutput("schema violation at score: 2 is greater than 1")
        return self.inner.structure(request)


# The `people` profile's classes (the default GatingParams are the `traffic` profile's).
FALL_CLASSES: dict = {"target_classes": frozenset({"Fall"}), "severe_classes": frozenset({"Fall"})}
FALL = [Detection(Box(10, 10, 60, 60), 1, "Fall", 0.9)]
NORMAL = [Detection(Box(10, 10, 60, 60), 0, "Normal", 0.9)]


def frames(n: int) -> list[np.ndarray]:
    # Every frame differs enough that the motion pre-gate lets it through.
    return [np.full((80, 80, 3), (i * 40) % 256, np.uint8) for i in range(n)]


def run(gater: FrameGater, n: int):
    return [gater.process("cam", i, i * 0.2, 1000 + i, img) for i, img in enumerate(frames(n))]


def test_one_incident_one_event() -> None:
    gater = FrameGater(ScriptedDetector([FALL] * 5), DetectorPriorStructurer("d"), GatingParams(**FALL_CLASSES))
    outcomes = run(gater, 5)
    assert [o.gate.gated for o in outcomes] == [True] * 5
    events = [o.event for o in outcomes if o.event]
    assert len(events) == 1 and events[0].event_id == event_id_for("cam", 1000, 0)


def test_non_target_classes_do_not_trigger() -> None:
    gater = FrameGater(ScriptedDetector([NORMAL] * 3), DetectorPriorStructurer("d"), GatingParams(**FALL_CLASSES))
    assert not any(o.gate.gated or o.event for o in run(gater, 3))


def test_invalid_output_is_counted_and_retried_on_next_frame() -> None:
    gater = FrameGater(ScriptedDetector([FALL] * 4), FlakyStructurer(failures=2), GatingParams(**FALL_CLASSES))
    outcomes = run(gater, 4)
    assert [o.invalid_model_output is not None for o in outcomes] == [True, True, False, False]
    assert [o.event is not None for o in outcomes] == [False, False, True, False]


def test_motion_pregate_reuses_last_result() -> None:
    det = ScriptedDetector([FALL])
    gater = FrameGater(det, DetectorPriorStructurer("d"), GatingParams(**FALL_CLASSES))
    still = np.full((80, 80, 3), 50, np.uint8)
    outs = [gater.process("cam", i, i * 0.2, i, still) for i in range(4)]
    assert det.calls == 1 and [o.detector_ran for o in outs] == [True, False, False, False]
    assert all(o.gate.gated for o in outs) and sum(o.event is not None for o in outs) == 1


def test_new_incident_after_cooldown() -> None:
    gater = FrameGater(
        ScriptedDetector([FALL, [], FALL]),
        DetectorPriorStructurer("d"),
        GatingParams(**FALL_CLASSES, cooldown_s=0.1, motion_gate=False),
    )
    outs = [
        gater.process("cam", i, t, i, img) for i, (t, img) in enumerate(zip([0.0, 1.0, 2.0], frames(3), strict=True))
    ]
    assert [o.event is not None for o in outs] == [True, False, True]


class RecordingStructurer(EventStructurer):
    """The detector-prior structurer under another name, recording the requests it gets."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.inner = DetectorPriorStructurer("scripted")
        self.requests: list[StructuringRequest] = []

    @property
    def producer(self) -> ProducerInfo:
        return ProducerInfo(kind=self.kind, name="test")

    def structure(self, request: StructuringRequest) -> StructuredEvent:
        self.requests.append(request)
        ev = self.inner.structure(request)
        return StructuredEvent(ev.data, self.producer)


def accident(conf: float, box: Box | None = None) -> list[Detection]:
    return [Detection(box or Box(20, 20, 60, 60), 0, "accident", conf)]


def test_routing_by_tau_high() -> None:
    """s_t >= tau_high skips the MLLM; tau_g <= s_t < tau_high goes to it; below tau_g nothing runs."""
    mllm, confident = RecordingStructurer("mllm"), RecordingStructurer("confident")
    far = Box(100, 100, 140, 140)
    script = [accident(0.9), accident(0.5, far), accident(0.1, Box(200, 200, 230, 230))]
    gater = FrameGater(
        ScriptedDetector(script),
        mllm,
        GatingParams(motion_gate=False),
        confident_structurer=confident,
    )
    images = [np.full((300, 300, 3), i * 60, np.uint8) for i in range(3)]
    outs = [gater.process("cam", i, float(i), i, img) for i, img in enumerate(images)]
    assert [o.route for o in outs] == ["confident", "mllm", None]
    assert len(confident.requests) == 1 and len(mllm.requests) == 1
    assert outs[0].event is not None and outs[0].event.route == "confident"
    assert outs[0].event.structured.producer.kind == "confident"


def test_context_detector_runs_once_on_the_event_frame() -> None:
    """The context detector sees the same frame, once, only when an event is written; its objects reach the event."""
    structurer = RecordingStructurer("prior")
    car_in = Detection(Box(50, 30, 90, 70), 2, "car", 0.8)
    car_far = Detection(Box(250, 250, 290, 290), 2, "car", 0.8)
    context = ScriptedDetector([[car_in, car_far]])
    gater = FrameGater(
        ScriptedDetector([accident(0.6)] * 3),
        structurer,
        GatingParams(motion_gate=False),
        context_detector=context,
    )
    outs = [gater.process("cam", i, float(i), i, np.full((300, 300, 3), i * 50, np.uint8)) for i in range(3)]
    assert context.calls == 1  # the later frames continue the same incident: no new event, no context run
    event = outs[0].event
    assert event is not None and event.context is not None
    assert event.context.involved == (car_in,)
    labels = [o["label"] for o in event.structured.data["objects"]]
    assert labels == ["accident", "vehicle"]
    assert "involved: 1 car" in event.structured.data["summary"]
    assert "in view: 2 car" in event.structured.data["summary"]
    assert "context" in outs[0].stage_ms


class CountingBatchDetector(ScriptedDetector):
    """Records the size of every batch it is given."""

    def __init__(self, script: list[list[Detection]]) -> None:
        super().__init__(script)
        self.batches: list[int] = []

    def detect_batch(self, images_bgr):
        self.batches.append(len(images_bgr))
        return super().detect_batch(images_bgr)


def test_a_batch_of_cameras_runs_the_detector_once_and_keeps_state_per_camera() -> None:
    det = CountingBatchDetector([FALL, NORMAL, FALL])
    gater = FrameGater(det, DetectorPriorStructurer("scripted"), GatingParams(**FALL_CLASSES))
    imgs = frames(3)
    batch = [FrameInput(cam, 0, 0.0, 1000, img) for cam, img in zip(("a", "b", "c"), imgs, strict=True)]
    outcomes = gater.process_batch(batch)
    assert det.batches == [3]
    assert [o.gate.gated for o in outcomes] == [True, False, True]
    # One incident per camera: the same boxes on two cameras are two events.
    assert outcomes[0].event is not None and outcomes[2].event is not None
    assert outcomes[0].event.camera_id == "a" and outcomes[2].event.camera_id == "c"
    assert all("detect" in o.stage_ms for o in outcomes)
    # The same unchanged images again: the motion pre-gate skips all three, each keeps its own result.
    again = gater.process_batch([FrameInput(f.camera_id, 1, 0.2, 2000, f.image) for f in batch])
    assert det.batches == [3] and [o.gate.gated for o in again] == [True, False, True]
    assert all(o.event is None for o in again)


def test_a_batch_refuses_two_frames_of_one_camera() -> None:
    gater = FrameGater(ScriptedDetector([]), DetectorPriorStructurer("scripted"), GatingParams(**FALL_CLASSES))
    img = frames(1)[0]
    with pytest.raises(ValueError, match="one frame per camera"):
        gater.process_batch([FrameInput("a", 0, 0.0, 1, img), FrameInput("a", 1, 0.2, 2, img)])
