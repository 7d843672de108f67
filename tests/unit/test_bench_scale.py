"""bench-scale's parts: the live replay of a file, the search for the most cameras, the ratios to 1 camera."""

from __future__ import annotations

import argparse

import pytest

from bench import scale
from bench.scale import RATIO_KEYS, Measured, ReplayCamera, search_max, with_ratios
from tests.fixtures.media import shared


def test_a_replay_loops_its_file_as_a_live_camera_for_its_duration() -> None:
    video = shared("videos", "static_camera", "bgslibrary_video.avi")
    # 50 fps for 0.4 s: 20 frames, paced (a few hundredths of a second in all).
    cam = ReplayCamera(video, fps=50.0, duration_s=0.4)
    try:
        frames = list(cam.frames())
    finally:
        cam.close()
    assert cam.is_stream and cam.ends
    assert [f.index for f in frames] == list(range(20))
    assert frames[-1].pts_s == pytest.approx(19 / 50)
    assert cam.stats.frames_read == 20


def _measured(held: dict[int, bool]) -> dict[int, Measured]:
    return {n: Measured({"cameras": n, "held": ok}, ok) for n, ok in held.items()}


def test_the_search_doubles_then_bisects_and_runs_only_what_it_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    capacity = 11
    runs: list[int] = []

    def fake_measure(n: int, _args: argparse.Namespace) -> Measured:
        runs.append(n)
        return Measured({"cameras": n, "held": n <= capacity}, n <= capacity)

    monkeypatch.setattr(scale, "measure", fake_measure)
    monkeypatch.setattr(scale, "with_ratios", lambda record, _ref: record)
    monkeypatch.setattr(scale, "emit", lambda _record: None)
    args = argparse.Namespace(max_cameras=64)
    measured = _measured({1: True, 4: True, 16: False})
    assert search_max(measured, args) == capacity
    assert runs == [10, 13, 11, 12]
    # Nothing overloads up to the limit: the limit's doubling stops the search.
    runs.clear()
    assert search_max(_measured({1: True, 4: True, 16: True}), argparse.Namespace(max_cameras=20)) == 16
    assert runs == []


def test_ratios_are_to_the_one_camera_run() -> None:
    keys = RATIO_KEYS
    ref = dict.fromkeys(keys, 2.0) | {"p95_frame_to_alert_ms": None}
    rec = with_ratios(dict.fromkeys(keys, 5.0), ref)
    assert rec["vs_1_camera"] == {k: (None if k == "p95_frame_to_alert_ms" else 2.5) for k in keys}
