"""What every stage agrees a frame is: a decoded frame, its place on the camera's time axis, its storage key.

Ingest produces `RawFrame`s, indexing and memory both key frames by `time_key(frame_time_s(...))`;
these live here so that no service has to import another for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RawFrame:
    """A decoded frame with its position in the source."""

    index: int
    pts_s: float
    image: np.ndarray


def frame_time_s(live: bool, pts_s: float, capture_time_ns: int) -> float:
    """A frame's place on its camera's time axis: Unix seconds for a live stream, pts for a file."""
    # A live stream's pts restarts with every reconnect; its capture time does not.
    return capture_time_ns / 1e9 if live else pts_s


def time_key(time_s: float) -> int:
    """A time on the camera axis as the integer milliseconds frames are stored under."""
    return round(time_s * 1000.0)
