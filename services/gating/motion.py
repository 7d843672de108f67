"""Motion pre-gate: skip the detector on frames that did not change since the last detected one."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class MotionDecision:
    """Whether the detector must run, and the change scores that decided it."""

    changed: bool
    score: float
    local_score: float = 0.0


class MotionGate:
    """Small greyscale thumbnails compared with the last frame the detector saw.

    Two scores: the mean absolute difference over the whole thumbnail (`threshold`), and the
    largest mean over a `grid` of cells (`local_threshold`). The local one is there for fixed
    cameras: a collision in one corner of a wide road view moves the global mean by less than
    the JPEG noise does, and a global-only gate once kept the detector blind to a crash for the
    30 frames of `max_skip`.

    Comparing with the last *detected* frame (not the previous frame) means slow drift
    accumulates until it crosses a threshold, so a slowly changing scene is never skipped
    forever. `max_skip` frames and `max_skip_s` seconds of stream time bound consecutive skips:
    the detector sees every camera at least that often, whatever the frame rate.
    """

    def __init__(
        self,
        threshold: float = 2.0,
        size: tuple[int, int] = (64, 36),
        max_skip: int = 30,
        *,
        local_threshold: float = 8.0,
        grid: tuple[int, int] = (4, 4),
        max_skip_s: float = 1.0,
    ) -> None:
        if size[0] % grid[0] or size[1] % grid[1]:
            raise ValueError(f"thumbnail {size} must divide into the {grid} grid")
        self._threshold = threshold
        self._local_threshold = local_threshold
        self._size = size
        self._grid = grid
        self._max_skip = max_skip
        self._max_skip_s = max_skip_s
        self._reference: np.ndarray | None = None
        self._reference_s: float | None = None
        self._skipped = 0

    def _scores(self, thumb: np.ndarray) -> tuple[float, float]:
        assert self._reference is not None
        diff = np.abs(thumb - self._reference).astype(np.float32)
        (w, h), (gx, gy) = self._size, self._grid
        cells = diff.reshape(gy, h // gy, gx, w // gx).mean(axis=(1, 3))
        return float(diff.mean()), float(cells.max())

    def check(self, image_bgr: np.ndarray, pts_s: float | None = None) -> MotionDecision:
        """Decide for one frame (at stream time `pts_s`, if known); a 'changed' frame becomes the new reference."""
        thumb = cv2.resize(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY), self._size, interpolation=cv2.INTER_AREA)
        thumb = thumb.astype(np.int16)
        if self._reference is None or self._reference.shape != thumb.shape:
            self._reference, self._reference_s, self._skipped = thumb, pts_s, 0
            return MotionDecision(True, float("inf"), float("inf"))
        score, local = self._scores(thumb)
        stale = self._skipped >= self._max_skip or (
            pts_s is not None
            and self._reference_s is not None
            and (pts_s - self._reference_s >= self._max_skip_s or pts_s < self._reference_s)
        )
        if score >= self._threshold or local >= self._local_threshold or stale:
            self._reference, self._reference_s, self._skipped = thumb, pts_s, 0
            return MotionDecision(True, score, local)
        self._skipped += 1
        return MotionDecision(False, score, local)
