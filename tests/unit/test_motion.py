"""Motion pre-gate."""

import numpy as np

from services.gating.motion import MotionGate


def test_static_scene_is_skipped_until_max_skip() -> None:
    m = MotionGate(threshold=2.0, max_skip=3)
    img = np.full((120, 160, 3), 100, np.uint8)
    assert m.check(img).changed
    assert [m.check(img).changed for _ in range(4)] == [False, False, False, True]


def test_change_runs_detector() -> None:
    m = MotionGate(threshold=2.0)
    a = np.full((120, 160, 3), 100, np.uint8)
    b = a.copy()
    b[:, :80] = 200
    m.check(a)
    assert m.check(b).changed


def test_slow_drift_accumulates_against_reference() -> None:
    m = MotionGate(threshold=2.0, max_skip=1000)
    m.check(np.full((120, 160, 3), 100, np.uint8))
    results = [m.check(np.full((120, 160, 3), 100 + i, np.uint8)).changed for i in range(1, 5)]
    assert results == [False, True, False, True]


def test_a_change_in_one_part_of_a_fixed_view_runs_the_detector() -> None:
    """A small region changing a lot (a crash in one corner) beats a global mean that barely moves."""
    m = MotionGate(threshold=2.0, local_threshold=8.0)
    a = np.full((360, 640, 3), 100, np.uint8)
    b = a.copy()
    b[:60, :100] = 160  # 2.6% of the frame, +60 grey levels: a global mean change of ~1.6
    m.check(a)
    d = m.check(b)
    assert d.score < 2.0 and d.local_score >= 8.0 and d.changed


def test_stream_time_bounds_the_skips() -> None:
    """At 1 fps, 30 skipped frames would be 30 s blind: max_skip_s re-runs the detector after 2 s."""
    m = MotionGate(threshold=2.0, max_skip=30, max_skip_s=2.0)
    assert MotionGate()._max_skip_s == 1.0
    img = np.full((120, 160, 3), 100, np.uint8)
    assert [m.check(img, float(t)).changed for t in range(6)] == [True, False, True, False, True, False]
    # Time going backwards (a restarted stream) re-runs it too.
    assert m.check(img, 0.0).changed
