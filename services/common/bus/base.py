"""Bus interface and the delivery semantics both implementations share.

Semantics (identical for the in-process bus and Kafka):

* ``publish`` takes a key (partitioning, ordering per key) and headers.
* A consumer belongs to a group; the group's committed offset is where a new
  consumer of that group starts. Topics are read from the committed offset, or
  from the earliest record when the group has none.
* An offset is committed only after the handler returned *and* everything the
  handler published was acknowledged (``Bus.flush``): work is durable first.
* A handler that raises :class:`RetryableError` is retried, with back-off, on
  the same message; nothing after it is handled until it succeeds.
* With ``manual_ack=True`` a handled record is committed only once the
  application calls :meth:`Consumer.ack` for it (and for every earlier record
  of its partition): for a consumer whose work finishes later than the handler,
  such as the uplink, whose queue is the topic itself.
* A handler that raises :class:`PoisonMessage`, or any other exception
  ``max_attempts`` times in a row, sends the message to the dead-letter topic
  (original headers kept, plus ``vigil-error`` and ``vigil-origin``), then its
  offset is committed: one bad message never blocks or crashes the stream.
* A consumer that keeps failing on *every* record is not one bad message: after
  ``max_consecutive_failures`` records dead-lettered in a row for errors other than
  :class:`PoisonMessage`, or ``max_failing_s`` without finishing a record (a retryable
  failure that never passes, a flush that keeps failing), it raises
  :class:`ConsumerFailing` from its thread, which fails its service (NOT_SERVING, exit 1)
  so that a supervisor restarts it, instead of spinning or dead-lettering the whole stream.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from services.common.metrics import DEAD_LETTERED

log = logging.getLogger(__name__)

ERROR_HEADER = "vigil-error"
ORIGIN_HEADER = "vigil-origin"


@dataclass(frozen=True)
class Message:
    """One record as a handler sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Mapping[str, bytes] = field(default_factory=dict)
    timestamp_ms: int = 0


Handler = Callable[[Message], None]


class PoisonMessage(Exception):
    """The message can never be handled (undecodable, invalid): dead-letter it."""


class RetryableError(Exception):
    """Handling failed for a reason that may pass (a dependency is down): retry the same message."""


class ConsumerFailing(RuntimeError):
    """A consumer's handling fails on every record, for too long: its service must fail and be restarted."""


class Bus(ABC):
    """Publish/subscribe with keys, headers and consumer groups."""

    @abstractmethod
    def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, bytes | str] | None = None,
    ) -> None:
        """Queue one record for `topic`; durable once :meth:`flush` returns."""

    @abstractmethod
    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every published record is acknowledged; raise if that fails."""

    @abstractmethod
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
        """Create a consumer of `topics` in consumer group `group` (see the module docstring for manual_ack)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def encode_key(key: bytes | str | None) -> bytes | None:
    """Keys travel as bytes."""
    return key.encode() if isinstance(key, str) else key


def encode_headers(headers: Mapping[str, bytes | str] | None) -> dict[str, bytes]:
    """Header values travel as bytes."""
    return {k: (v.encode() if isinstance(v, str) else v) for k, v in (headers or {}).items()}


class AckTracker:
    """Committable offsets when records finish out of order: the low watermark of unfinished ones.

    Per (topic, partition): a record is outstanding from when it was handled
    until it is acked; the committable offset is the smallest outstanding one,
    or one past the highest handled when none is outstanding.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outstanding: dict[tuple[str, int], set[int]] = {}
        self._next: dict[tuple[str, int], int] = {}

    def handled(self, msg: Message) -> None:
        """`msg` was handled; it stays uncommittable until acked."""
        tp = (msg.topic, msg.partition)
        with self._lock:
            self._outstanding.setdefault(tp, set()).add(msg.offset)
            self._next[tp] = max(self._next.get(tp, 0), msg.offset + 1)

    def finished(self, msg: Message) -> None:
        """`msg` needs no ack (dead-lettered): committable as soon as earlier ones are."""
        tp = (msg.topic, msg.partition)
        with self._lock:
            self._next[tp] = max(self._next.get(tp, 0), msg.offset + 1)

    def ack(self, topic: str, partition: int, offset: int) -> None:
        """The work for this record is durable."""
        with self._lock:
            self._outstanding.get((topic, partition), set()).discard(offset)

    def committable(self) -> dict[tuple[str, int], int]:
        """Offset to commit per (topic, partition)."""
        with self._lock:
            return {
                tp: min(self._outstanding[tp]) if self._outstanding.get(tp) else nxt for tp, nxt in self._next.items()
            }

    def forget(self, topic: str, partition: int) -> None:
        """Drop a partition this member lost: its new owner re-reads from the committed offset."""
        with self._lock:
            self._outstanding.pop((topic, partition), None)
            self._next.pop((topic, partition), None)


class Consumer(ABC):
    """Runs a handler over a group's share of some topics; see the module docstring."""

    def __init__(
        self,
        bus: Bus,
        handler: Handler,
        *,
        dead_letter_topic: str | None,
        max_attempts: int,
        retry_backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        manual_ack: bool = False,
        max_failing_s: float = 300.0,
        max_consecutive_failures: int = 20,
    ) -> None:
        self._bus = bus
        self._acks: AckTracker | None = AckTracker() if manual_ack else None
        self._handler = handler
        self._dead_letter_topic = dead_letter_topic
        self._max_attempts = max_attempts
        self._backoff0 = retry_backoff_s
        self._max_backoff = max_backoff_s
        self.handled = 0
        self.dead_lettered = 0
        self._max_failing_s = max_failing_s
        self._max_consecutive = max_consecutive_failures
        # Records dead-lettered in a row for non-poison errors, and since when nothing was finished.
        self._consecutive_failures = 0
        self._failing_since: float | None = None
        self._failure_lock = threading.Lock()
        # While run() is inside poll(): when it last showed a sign of life (poll began, a handler attempt
        # began). A poll that stops moving inside a client library is the one stall no handler can report.
        self._active_since: float | None = None

    @abstractmethod
    def poll(self, timeout_s: float = 0.5) -> int:
        """Handle what arrives within `timeout_s` and commit it; return how many were handled."""

    @abstractmethod
    def close(self) -> None:
        """Leave the group; committed offsets stay."""

    def run(self, stop: threading.Event, idle_timeout_s: float = 0.5) -> None:
        """Poll until `stop` is set."""
        try:
            while not stop.is_set():
                self._active_since = time.monotonic()
                self.poll(idle_timeout_s)
        finally:
            self._active_since = None

    @property
    def max_stall_s(self) -> float:
        """How long a poll may show no sign of life before :meth:`stalled_s` means the consumer is stuck."""
        return self._max_failing_s

    def stalled_s(self) -> float:
        """Seconds the running poll has shown no sign of life (0 when not polling); the Stage watches it."""
        since = self._active_since
        return 0.0 if since is None else time.monotonic() - since

    def ack(self, msg: Message) -> None:
        """With manual_ack: `msg`'s work is durable; its offset may be committed (thread-safe)."""
        if self._acks is None:
            raise RuntimeError("ack() needs a consumer created with manual_ack=True")
        self._acks.ack(msg.topic, msg.partition, msg.offset)

    def _handle(self, msg: Message, stop: threading.Event | None = None) -> bool:
        """Run the handler with the retry/dead-letter policy; True when the offset may be committed.

        Returns False only when a retryable failure is still failing and `stop` was set.
        """
        if self._acks is not None:
            # Outstanding before the handler runs: it may hand the work to a thread that acks at once.
            self._acks.handled(msg)

        def work() -> None:
            self._handler(msg)
            self.handled += 1

        return self.retry(msg, work, stop)

    def retry(self, msg: Message, work: Callable[[], None], stop: threading.Event | None = None) -> bool:
        """Do `msg`'s work with this consumer's policy; True once it is done or dead-lettered.

        RetryableError is retried with back-off, PoisonMessage is dead-lettered at once, any other
        error after `max_attempts`. False only when a retryable failure is still failing and `stop`
        was set. A handler that hands work to its own thread (manual_ack) uses this there too.
        """
        attempts = 0
        backoff = self._backoff0
        while True:
            if self._active_since is not None:
                self._active_since = time.monotonic()
            try:
                work()
                self._succeeded()
                return True
            except RetryableError as exc:
                log.warning(
                    "retryable failure on %s[%d]@%d: %s; retrying in %.1fs",
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    exc,
                    backoff,
                )
            except PoisonMessage as exc:
                self._dead_letter(msg, f"poison: {exc}", kind="poison")
                self._finish_without_ack(msg)
                return True
            except Exception as exc:  # a handler bug must not stall the stream forever
                attempts += 1
                log.exception(
                    "handler failed on %s[%d]@%d (attempt %d/%d)",
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    attempts,
                    self._max_attempts,
                )
                if attempts >= self._max_attempts:
                    self._dead_letter(msg, f"{type(exc).__name__}: {exc}", kind="failed")
                    self._finish_without_ack(msg)
                    self._failed(f"{type(exc).__name__}: {exc}", dead_lettered=True)
                    return True
            self._failed(f"still failing on {msg.topic}[{msg.partition}]@{msg.offset}")
            if stop is not None and stop.is_set():
                return False
            time.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    def _succeeded(self) -> None:
        """A record was finished: the consumer is healthy again."""
        with self._failure_lock:
            self._consecutive_failures = 0
            self._failing_since = None

    def _failed(self, why: str, *, dead_lettered: bool = False) -> None:
        """One more failure; ConsumerFailing once they show the handling is broken, not one message."""
        now = time.monotonic()
        with self._failure_lock:
            if dead_lettered:
                self._consecutive_failures += 1
            if self._failing_since is None:
                self._failing_since = now
            failing_s = now - self._failing_since
            consecutive = self._consecutive_failures
        if consecutive >= self._max_consecutive:
            raise ConsumerFailing(
                f"{consecutive} records in a row failed and were dead-lettered (last: {why}); "
                "the handler is broken, not the messages"
            )
        if failing_s > self._max_failing_s:
            raise ConsumerFailing(f"no record finished for {failing_s:.0f}s (last: {why})")

    def _finish_without_ack(self, msg: Message) -> None:
        if self._acks is not None:
            self._acks.ack(msg.topic, msg.partition, msg.offset)

    def _committable(self, msg: Message) -> int:
        """The offset to commit on msg's partition once msg is handled."""
        if self._acks is None:
            return msg.offset + 1
        return self._acks.committable().get((msg.topic, msg.partition), msg.offset + 1)

    def _dead_letter(self, msg: Message, reason: str, kind: str) -> None:
        origin = f"{msg.topic}/{msg.partition}/{msg.offset}"
        if self._dead_letter_topic is None:
            log.error("dropping undeliverable message %s (no dead-letter topic): %s", origin, reason)
            DEAD_LETTERED.labels(topic=msg.topic, reason=f"{kind}-dropped").inc()
            return
        log.error("dead-lettering %s to %s: %s", origin, self._dead_letter_topic, reason)
        headers = dict(msg.headers)
        headers[ERROR_HEADER] = reason.encode()[:1000]
        headers[ORIGIN_HEADER] = origin.encode()
        self._bus.publish(self._dead_letter_topic, msg.value, key=msg.key, headers=headers)
        self._bus.flush()
        self.dead_lettered += 1
        # After the flush: the count says what reached the dead-letter topic.
        DEAD_LETTERED.labels(topic=msg.topic, reason=kind).inc()
