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
