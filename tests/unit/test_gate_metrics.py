"""Fig. 4's gate metrics (pure): AP50, Balanced Accuracy, Suspect Precision, False Positives, MLLM Load."""

from __future__ import annotations

import math

import pytest

from services.gating.training.evaluate import FrameResult, average_precision, gate_metrics, parse_model_spec
from services.models.detections import Box

B = Box(0, 0, 10, 10)
FAR = Box(50, 50, 60, 60)


def frame(label: str, score: float | None, truth: tuple[Box, ...] | None = None, box: Box = B) -> FrameResult:
    dets = () if score is None else ((box, score),)
    return FrameResult("c", 0, label, truth if truth is not None else (() if label == "normal" else None), dets)


def test_perfect_ap_and_zero_ap() -> None:
    assert average_precision([frame("accident", 0.9, (B,)), frame("normal", None)]) == pytest.approx(1.0)
    assert average_precision([frame("accident", 0.9, (B,), box=FAR)]) == 0.0


def test_ap_ranks_a_confident_false_positive_first() -> None:
    # One FP above one TP: precision 0.5 at recall 1 -> AP 0.5.
    frames = [frame("normal", 0.9), frame("accident", 0.5, (B,))]
    assert average_precision(frames) == pytest.approx(0.5)


def test_unknown_boxes_are_not_scored() -> None:
    frames = [frame("accident", 0.9, (B,)), frame("accident", 0.95, None, box=FAR)]
    assert average_precision(frames) == pytest.approx(1.0)
    assert math.isnan(average_precision([frame("accident", 0.9, None)]))


def test_frame_level_metrics() -> None:
    frames = [
        frame("accident", 0.9),  # confident TP
        frame("accident", 0.5),  # TP, routed to the MLLM
        frame("accident", 0.1),  # FN
        frame("normal", 0.3),  # FP, routed to the MLLM
        frame("normal", None),  # TN
        frame("normal", 0.2),  # TN (below tau_low)
    ]
    m = gate_metrics(frames, 0.25, 0.8)
    assert (m.tpr, m.tnr) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert m.balanced_accuracy == pytest.approx(2 / 3)
    assert m.suspect_precision == pytest.approx(2 / 3)
    assert m.false_positives == 1 and m.false_positive_rate == pytest.approx(1 / 3)
    assert m.mllm_load == pytest.approx(2 / 6) and m.confident_share == pytest.approx(1 / 6)


def test_thresholds_checked() -> None:
    with pytest.raises(ValueError, match="tau_low"):
        gate_metrics([], 0.9, 0.5)


def test_model_spec() -> None:
    assert parse_model_spec("models/a.onnx") == ("a", parse_model_spec("models/a.onnx")[1], "accident")
    name, path, target = parse_model_spec("people=/x/best_fp16.onnx:Fall")
    assert (name, str(path), target) == ("people", "/x/best_fp16.onnx", "Fall")
