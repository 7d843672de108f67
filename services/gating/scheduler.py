"""Fair scheduling of frames across cameras: one bounded queue per camera, batches taken round-robin.

The frames topic interleaves every camera's frames in arrival order, so a camera that
publishes faster (or bursts after a stall) would fill a FIFO and make the others wait behind
it. Here each camera has its own queue and a batch takes at most one frame per camera,
starting after the camera the previous batch started with: every camera with a frame waiting
is served once per batch, whatever the others do. A live camera's queue is bounded and drops
its oldest frame when full (a stale frame is worth less than a fresh one); a file's frames are
never dropped (the reader is paced by the pipeline instead).

Pure threading: no bus, no models.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class CameraQueue(Generic[T]):
    """One camera's waiting frames and what was dropped from them."""

    items: deque[T] = field(default_factory=deque)
    dropped: int = 0


class FairQueues(Generic[T]):
    """Per-camera queues; `take` returns a batch with at most one item per camera, round-robin."""

    def __init__(self, live_capacity: int = 2) -> None:
        if live_capacity < 1:
            raise ValueError(f"live_capacity must be >= 1, got {live_capacity}")
        self._capacity = live_capacity
        self._queues: dict[str, CameraQueue[T]] = {}
        # Camera ids in the order they first appeared; `_start` rotates over it.
        self._order: list[str] = []
        self._start = 0
        self._cond = threading.Condition()

    def put(self, camera_id: str, item: T, *, live: bool) -> T | None:
        """Queue `item`; for a live camera whose queue is full, return the oldest item, dropped to make room."""
        with self._cond:
            queue = self._queues.get(camera_id)
            if queue is None:
                queue = self._queues[camera_id] = CameraQueue()
                self._order.append(camera_id)
            dropped = None
            if live and len(queue.items) >= self._capacity:
                dropped = queue.items.popleft()
                queue.dropped += 1
            queue.items.append(item)
            self._cond.notify_all()
            return dropped

    def take(self, max_items: int, timeout_s: float) -> list[T]:
        """Up to `max_items` items, one per camera, from the camera after the last batch's first; [] on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not any(q.items for q in self._queues.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
            n = len(self._order)
            batch: list[T] = []
            first: int | None = None
            for k in range(n):
                i = (self._start + k) % n
                queue = self._queues[self._order[i]]
                if queue.items:
                    first = i if first is None else first
                    batch.append(queue.items.popleft())
                    if len(batch) >= max_items:
                        break
            # The next batch starts after this one's first camera, so with more cameras than
            # `max_items` every camera still gets its turn.
            self._start = ((first if first is not None else self._start) + 1) % n
            return batch

    def pending(self) -> int:
        """Items waiting, all cameras together."""
        with self._cond:
            return sum(len(q.items) for q in self._queues.values())

    def dropped(self) -> dict[str, int]:
        """Frames dropped per camera (live cameras whose queue overflowed)."""
        with self._cond:
            return {camera: q.dropped for camera, q in self._queues.items()}
