"""The frames between the source and the bus: a bounded buffer that rides out a broker outage.

Issue 13: a broker unreachable for 35 s made ingest exit with a traceback, and 111 of 150 frames were
never published. Here the reader puts encoded frames into the outbox and a sender thread delivers them
in small batches (publish, then flush), retrying a batch with back-off for as long as the bus says the
failure may pass (:class:`RetryableError`: unreachable, or a producer rebuilt after a broker restart).
While it waits, the outbox fills up to its capacity, and then:

* a file's reader blocks: nothing is dropped, and reading resumes where it was once the broker is back;
* a live camera's reader keeps reading (a camera that is not read drops frames or the connection itself),
  and the outbox drops its oldest frames first: a stale frame is worth less than a fresh one. Every drop
  is counted (``vigil_ingest_frames_dropped_total``).

The wait is bounded too: a broker still away after ``max_wait_s`` is raised in the reader, and the service
exits non-zero (a supervisor restarts it; `vigil run` stops the run). So is a refusal that waiting cannot
cure (a frame larger than the broker takes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from services.common.bus import Bus, RetryableError
from services.ingest import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingFrame:
    """One encoded frame waiting to be published."""

    index: int
    payload: bytes


class FrameOutbox:
    """Bounded frames waiting for the bus; `put` from the reader, `run` on the sender thread."""

    def __init__(
        self,
        bus: Bus,
        topic: str,
        camera_id: str,
        capacity: int,
        *,
        live: bool,
        on_delivered: Callable[[int], None] | None = None,
        batch: int = 16,
        retry_backoff_s: float = 0.5,
        max_backoff_s: float = 5.0,
        max_wait_s: float = 600.0,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"outbox capacity must be >= 1, got {capacity}")
        self._bus = bus
        self._topic = topic
        self._camera_id = camera_id
        self._capacity = capacity
        self._live = live
        self._on_delivered = on_delivered
        self._batch = batch
        self._backoff0 = retry_backoff_s
        self._max_backoff = max_backoff_s
        self._max_wait_s = max_wait_s
        self._items: deque[OutgoingFrame] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.error: BaseException | None = None
        self.delivered = 0
        self.dropped = 0
        # Frames still in the outbox when a stop came while the broker was away.
        self.abandoned = 0
        self.retries = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, frame: OutgoingFrame, stop: threading.Event) -> None:
        """Queue `frame`: a live camera drops the oldest when full, a file waits for room (or for `stop`)."""
        with self._cond:
            while True:
                if self.error is not None:
                    raise self.error
                if len(self._items) < self._capacity:
                    break
                if self._live:
                    self._items.popleft()
                    self.dropped += 1
                    metrics.FRAMES_DROPPED.inc()
                    break
                if stop.is_set():
                    return
                self._cond.wait(0.2)
            self._items.append(frame)
            metrics.OUTBOX_FRAMES.set(len(self._items))
            self._cond.notify_all()

    def close(self) -> None:
        """No more frames: the sender delivers what is left, then returns."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def run(self, stop: threading.Event) -> None:
        """Deliver frames until closed and empty; on `stop`, give up on what cannot be delivered now."""
        try:
            while True:
                with self._cond:
                    while not self._items and not self._closed and not stop.is_set():
                        self._cond.wait(0.2)
                    if not self._items:
                        return
                    batch = [self._items.popleft() for _ in range(min(self._batch, len(self._items)))]
                    metrics.OUTBOX_FRAMES.set(len(self._items))
                    self._cond.notify_all()
                if not self._deliver(batch, stop):
                    with self._cond:
                        self.abandoned = len(batch) + len(self._items)
                        self._items.clear()
                    log.error("stopped while the broker was away: %d frames not published", self.abandoned)
                    return
        except BaseException as exc:
            with self._cond:
                self.error = exc
                self._cond.notify_all()
            raise

    def _deliver(self, batch: list[OutgoingFrame], stop: threading.Event) -> bool:
        """Publish and flush `batch`, retrying while the failure may pass; False when stopped while failing."""
        backoff = self._backoff0
        failing_since: float | None = None
        while True:
            try:
                for frame in batch:
                    # The frame's seq orders it; the camera id keeps a camera on one partition.
                    self._bus.publish(
                        self._topic, frame.payload, key=self._camera_id, headers={"vigil-camera": self._camera_id}
                    )
                self._bus.flush()
                break
            except RetryableError as exc:
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since > self._max_wait_s:
                    log.error(
                        "broker still away after %.0fs: giving up (%d frames waiting)", now - failing_since, len(self)
                    )
                    raise
                self.retries += 1
                metrics.PUBLISH_RETRIES.inc()
                log.warning(
                    "broker away (%s): %d frames waiting (capacity %d, %s), retrying in %.1fs",
                    exc,
                    len(batch) + len(self),
                    self._capacity,
                    "then the oldest drop" if self._live else "then reading pauses",
                    backoff,
                )
                if stop.wait(backoff):
                    return False
                backoff = min(backoff * 2, self._max_backoff)
        for frame in batch:
            self.delivered += 1
            metrics.FRAMES_PUBLISHED.inc()
            if self._on_delivered is not None:
                self._on_delivered(frame.index)
        return True
