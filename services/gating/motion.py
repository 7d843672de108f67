"""Motion pre-gate: skip the detector on frames that did not change since the last detected one."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class MotionDecision:
    """Whether the detector must run, and the change score that decided it."""

    changed: bool
    score: float


class MotionGate:
    """Mean absolute difference of small greyscale thumbnails against the last frame the detector saw.

    Comparing with the last *detected* frame (not the previous frame) means slow
    drift accumulates until it crosses the threshold, so a slowly changing
    scene is never skipped forever. `max_skip` bounds consecutive skips, so a
    frame is re-detected at least that often even in a frozen scene.
    """

    def __init__(self, threshold: float = 2.0, size: tuple[int, int] = (64, 36), max_skip: int = 30) -> None:
        self._threshold = threshold
        self._size = size
        self._max_skip = max_skip
        self._reference: np.ndarray | None = None
        self._skipped = 0

    def check(self, image_bgr: np.ndarray) -> MotionDecision:
        """Decide for one frame; a frame judged 'changed' becomes the new reference."""
        thumb = cv2.resize(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY), self._size, interpolation=cv2.INTER_AREA)
        thumb = thumb.astype(np.int16)
        if self._reference is None or self._reference.shape != thumb.shape:
            self._reference, self._skipped = thumb, 0
            return MotionDecision(True, float("inf"))
        score = float(np.abs(thumb - self._reference).mean())
        if score >= self._threshold or self._skipped >= self._max_skip:
            self._reference, self._skipped = thumb, 0
            return MotionDecision(True, score)
        self._skipped += 1
        return MotionDecision(False, score)
