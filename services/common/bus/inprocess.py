"""In-process bus for the embedded mode: the Kafka semantics without a broker.

One partition per topic; consumer groups keep committed offsets, so a consumer
closed and recreated in the same group resumes where the group left off.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence

from services.common.bus.base import Bus, Consumer, Handler, Message, encode_headers, encode_key


class InProcessBus(Bus):
    """Topics as append-only lists in memory, guarded by one condition variable."""

    def __init__(self) -> None:
        self._logs: dict[str, list[Message]] = defaultdict(list)
        self._committed: dict[tuple[str, str], int] = {}
        self._cond = threading.Condition()

    def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, bytes | str] | None = None,
    ) -> None:
        """Append to the topic; visible to consumers at once."""
        with self._cond:
            log = self._logs[topic]
            log.append(
                Message(
                    topic=topic,
                    partition=0,
                    offset=len(log),
                    key=encode_key(key),
                    value=bytes(value),
                    headers=encode_headers(headers),
                    timestamp_ms=int(time.time() * 1000),
                )
            )
            self._cond.notify_all()

    def flush(self, timeout_s: float | None = None) -> None:
        """Publishing is synchronous here: nothing to wait for."""

    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        handler: Handler,
        *,
        dead_letter_topic: str | None = None,
        max_attempts: int = 3,
        manual_ack: bool = False,
    ) -> InProcessConsumer:
        """Create a consumer that starts at the group's committed offsets."""
        return InProcessConsumer(
            self,
            list(topics),
            group,
            handler,
            dead_letter_topic=dead_letter_topic,
            max_attempts=max_attempts,
            manual_ack=manual_ack,
        )

    def messages(self, topic: str) -> list[Message]:
        """Everything ever published to `topic` (tests and summaries)."""
        with self._cond:
            return list(self._logs[topic])

    def committed(self, group: str, topic: str) -> int:
        """The group's committed offset on `topic` (0 when none)."""
        with self._cond:
            return self._committed.get((group, topic), 0)

    def lag(self, group: str, topic: str) -> int:
        """Records on `topic` the group has not committed yet."""
        with self._cond:
            return len(self._logs[topic]) - self._committed.get((group, topic), 0)

    # -- used by InProcessConsumer -------------------------------------------------
    def _fetch(self, topics: Sequence[str], positions: dict[str, int], timeout_s: float) -> list[Message]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                out: list[Message] = []
                for t in topics:
                    out.extend(self._logs[t][positions[t] :])
                if out:
                    return out
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)

    def _commit(self, group: str, topic: str, offset: int) -> None:
        with self._cond:
            self._committed[(group, topic)] = offset
            self._cond.notify_all()

    def wait_idle(self, group: str, topics: Sequence[str], timeout_s: float) -> bool:
        """Block until `group` has committed everything on `topics`; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while any(len(self._logs[t]) > self._committed.get((group, t), 0) for t in topics):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True


class InProcessConsumer(Consumer):
    """A group member over in-memory topics."""

    def __init__(
        self,
        bus: InProcessBus,
        topics: list[str],
        group: str,
        handler: Handler,
        *,
        dead_letter_topic: str | None,
        max_attempts: int,
        manual_ack: bool = False,
    ) -> None:
        super().__init__(
            bus, handler, dead_letter_topic=dead_letter_topic, max_attempts=max_attempts, manual_ack=manual_ack
        )
        self._mem = bus
        self._topics = topics
        self._group = group
        self._positions = {t: bus.committed(group, t) for t in topics}
        self._stop = threading.Event()

    def poll(self, timeout_s: float = 0.5) -> int:
        """Handle and commit what is available, in order."""
        n = 0
        for msg in self._mem._fetch(self._topics, self._positions, timeout_s):
            if not self._handle(msg, self._stop):
                break
            self._positions[msg.topic] = msg.offset + 1
            self._mem._commit(self._group, msg.topic, self._committable(msg))
            n += 1
        if self._acks is not None:
            # Acks arrive between polls: advance the commit even when nothing new came in.
            for (topic, _), offset in self._acks.committable().items():
                self._mem._commit(self._group, topic, offset)
        return n

    def run(self, stop: threading.Event, idle_timeout_s: float = 0.2) -> None:
        """Poll until `stop` is set."""
        self._stop = stop
        super().run(stop, idle_timeout_s)

    def close(self) -> None:
        """Commit what was acknowledged since the last poll; offsets stay with the bus."""
        self._stop.set()
        if self._acks is not None:
            for (topic, _), offset in self._acks.committable().items():
                self._mem._commit(self._group, topic, offset)
