"""Uplink bandwidth estimation from the uplink's own acknowledged sends.

Each send gives a sample (bytes, seconds from start of send to broker ack).
Samples are grouped per scheduling interval into one throughput figure
(bytes / busy seconds), so a burst of small JSON units counts as one
measurement of the link rather than many RTT-bound ones. The estimate is the
harmonic mean of the last `window` interval figures times a safety factor:
the harmonic mean is dominated by the slow samples, which is the
conservative direction (RobustMPC and FESTIVE make the same choice for video
bitrate adaptation). Before the first sample the configured prior is used.
"""

from __future__ import annotations

import threading
from collections import deque


class BandwidthEstimator:
    """Conservative throughput estimate in bytes per second."""

    def __init__(self, prior_Bps: float, window: int = 5, safety: float = 0.9, min_busy_s: float = 1e-3) -> None:
        if prior_Bps <= 0:
            raise ValueError(f"prior bandwidth must be > 0, got {prior_Bps}")
        if not 0 < safety <= 1:
            raise ValueError(f"safety must be in (0, 1], got {safety}")
        self._prior = prior_Bps
        self._safety = safety
        self._min_busy = min_busy_s
        self._samples: deque[float] = deque(maxlen=window)
        self._bytes = 0
        self._busy_s = 0.0
        self._lock = threading.Lock()

    def observe(self, nbytes: int, seconds: float) -> None:
        """One acknowledged send of `nbytes` that took `seconds`."""
        with self._lock:
            self._bytes += nbytes
            self._busy_s += max(seconds, 0.0)

    def close_interval(self) -> float | None:
        """Turn this interval's sends into one throughput sample; returns it (None when idle)."""
        with self._lock:
            if self._bytes == 0 or self._busy_s < self._min_busy:
                self._bytes, self._busy_s = 0, 0.0
                return None
            sample = self._bytes / self._busy_s
            self._samples.append(sample)
            self._bytes, self._busy_s = 0, 0.0
            return sample

    def estimate(self) -> float:
        """Bytes per second to plan the next interval with."""
        with self._lock:
            if not self._samples:
                return self._prior * self._safety
            harmonic = len(self._samples) / sum(1.0 / s for s in self._samples)
            return harmonic * self._safety
