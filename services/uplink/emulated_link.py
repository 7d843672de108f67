"""EMULATION: a trace-shaped WAN link in front of the cloud bus, for tests and benchmarks.

Real deployments send over the real uplink and never use this. Here a
publish first waits for the time the payload would take to cross a link whose
capacity follows a bandwidth trace second by second (looping at its end),
then publishes to the real cloud broker. Sends are serialised (the link is
FIFO), so a unit that starts while another is on the wire waits for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from services.common.bus import Bus, Consumer, Handler

# Per-record framing on the wire (Kafka record + TCP/IP headers), counted against the link.
RECORD_OVERHEAD_BYTES = 120


class TraceClock:
    """Transmission time of a byte count starting at a moment, on a per-second capacity trace."""

    def __init__(self, capacity_Bps: Sequence[float] | np.ndarray, start_s: float) -> None:
        cap = np.asarray(capacity_Bps, dtype=float)
        if cap.ndim != 1 or cap.size == 0:
            raise ValueError("capacity trace must be a non-empty 1-D sequence of bytes/s per second")
        if not np.isfinite(cap).all() or (cap < 0).any():
            raise ValueError("capacity trace must be finite and non-negative")
        if cap.sum() <= 0:
            raise ValueError("capacity trace carries no bytes at all")
        self._cap = cap
        self._start = start_s

    def finish_time(self, begin_s: float, nbytes: float) -> float:
        """When `nbytes` sent from `begin_s` (absolute seconds) have fully crossed the link."""
        t = begin_s - self._start
        left = float(nbytes)
        n = self._cap.size
        while left > 0:
            sec = int(np.floor(t))
            rate = self._cap[sec % n]
            end_of_sec = sec + 1.0
            room = rate * (end_of_sec - t)
            if room >= left:
                t += left / rate
                break
            left -= room
            t = end_of_sec
        return self._start + t


class EmulatedLinkBus(Bus):
    """Wraps the cloud bus: every publish is delayed by the emulated link, then acknowledged."""

    def __init__(
        self,
        inner: Bus,
        capacity_Bps: Sequence[float] | np.ndarray,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._inner = inner
        self._clock = clock
        self._sleep = sleep
        self._trace = TraceClock(capacity_Bps, clock())
        self._wire_free_at = clock()
        self._lock = threading.Lock()
        self.bytes_sent = 0

    def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, bytes | str] | None = None,
    ) -> None:
        """Occupy the link for this record's bytes, then publish it to the real cloud broker."""
        size = len(value) + len(key or b"") + sum(len(k) + len(v) for k, v in (headers or {}).items())
        with self._lock:
            begin = max(self._clock(), self._wire_free_at)
            done = self._trace.finish_time(begin, size + RECORD_OVERHEAD_BYTES)
            self._wire_free_at = done
            self.bytes_sent += size
        delay = done - self._clock()
        if delay > 0:
            self._sleep(delay)
        self._inner.publish(topic, value, key=key, headers=headers)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for the real broker's acknowledgements."""
        self._inner.flush(timeout_s)

    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        handler: Handler,
        *,
        dead_letter_topic: str | None = None,
        max_attempts: int = 3,
        manual_ack: bool = False,
    ) -> Consumer:
        """Consuming is not shaped: the emulation covers the edge -> cloud direction only."""
        return self._inner.consumer(
            topics,
            group,
            handler,
            dead_letter_topic=dead_letter_topic,
            max_attempts=max_attempts,
            manual_ack=manual_ack,
        )

    def close(self) -> None:
        """Close the wrapped bus."""
        self._inner.close()
