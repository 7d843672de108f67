"""The evidence answerer (no VLM) and the citation parser of the Qwen2.5-VL answerer."""

from __future__ import annotations

import numpy as np
import pytest

from services.models.answerers.base import AnswerError, EvidenceAnswerer, EvidenceFrame, format_time
from services.models.answerers.config import EvidenceAnswererConfig
from services.models.answerers.qwen_vl import cited_times, frame_line


def frame(t: float, aux: str = "", camera: str = "cam-1", p: float = 0.5, image: bool = False) -> EvidenceFrame:
    pixels = np.zeros((8, 8, 3), dtype=np.uint8) if image else None
    return EvidenceFrame(camera_id=camera, time_s=t, image=pixels, aux_text=aux, similarity=0.3, probability=p)


FRAMES = [frame(3.0), frame(7.5), frame(12.0), frame(40.25)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Frame 2 shows a person lying down.", [7.5]),
        ("frames 1 and 3", [3.0, 12.0]),
        ("Frames 1, 2 & 4 agree.", [3.0, 7.5, 40.25]),
        ("Frames 2-4 show the fall.", [7.5, 12.0, 40.25]),
        ("frame #3", [12.0]),
        ("Frame 1 and frame 4.", [3.0, 40.25]),
        ("At 7.5s someone falls.", [7.5]),
        ("at 12 s and 40.2 seconds", [12.0, 40.25]),
        ("Frame 2 at 7.5s", [7.5]),
        # A time right after a frame number is a time, not another frame.
        ("frame 1, 12.0s", [3.0, 12.0]),
        ("frame 2, 3s", [3.0, 7.5]),
        # Out of range frame numbers and times no frame has cite nothing.
        ("frame 9 at 99.0s", []),
        ("Nobody fell.", []),
        ("", []),
    ],
)
def test_cited_times(text: str, expected: list[float]) -> None:
    assert cited_times(text, FRAMES) == expected


def test_cited_clock_times_of_a_live_camera() -> None:
    live = [frame(1_700_000_000.0), frame(1_700_000_065.0)]
    assert format_time(live[1].time_s) == "2023-11-14 22:14:25 UTC"
    assert cited_times("someone fell at 22:14:25", live) == [1_700_000_065.0]
    assert cited_times("between 22:13:20 and 22:14:25 UTC", live) == [1_700_000_000.0, 1_700_000_065.0]
    assert cited_times("at 1:00:00", live) == []


def test_frame_line_says_when_there_is_no_image() -> None:
    assert frame_line(2, frame(7.5, "a person", camera="door", image=True)) == "Frame 2 at 7.5s (camera door): a person"
    line = frame_line(1, frame(3.0))
    assert line.startswith("Frame 1 at 3.0s (camera cam-1): no description") and "no image" in line


def test_evidence_answer_lists_times_and_descriptions() -> None:
    frames = [
        frame(3.0, "a person walks in", p=0.4),
        frame(5.0, "a person walks in", p=0.4),
        frame(9.0, "a person lies on the floor", camera="cam-2", p=0.9),
    ]
    answer = EvidenceAnswerer().answer("  did anyone fall? ", frames)
    assert answer.vlm_ran is False and answer.vlm == "evidence" and not answer.random_init
    assert answer.notes == [EvidenceAnswerer.NOTE]
    assert answer.used_times_s == [3.0, 5.0, 9.0]
    lines = answer.text.splitlines()
    assert "did anyone fall?" in lines[0] and "No VLM ran" in lines[0]
    # Most probable cluster first; a cluster's frames collapse into one time span.
    assert lines[1].startswith("- cam-2 at 9.0s (1 frame,") and lines[1].endswith("a person lies on the floor")
    assert lines[2].startswith("- cam-1 at 3.0s-5.0s (2 frames,") and lines[2].endswith("a person walks in")


def test_evidence_answer_without_description() -> None:
    answer = EvidenceAnswerer().answer("what happened", [frame(1.0)])
    assert answer.text.endswith("no description")


def test_evidence_answer_needs_frames() -> None:
    with pytest.raises(AnswerError):
        EvidenceAnswerer().answer("anything?", [])


def test_build_answerer_defaults_to_evidence() -> None:
    from services.models.answerers.base import build_answerer

    assert isinstance(build_answerer(EvidenceAnswererConfig()), EvidenceAnswerer)
