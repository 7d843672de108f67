"""The bus semantics of services.common.bus.base, on the in-process implementation."""

from __future__ import annotations

import threading

import pytest

from services.common.bus import Message, PoisonMessage, RetryableError
from services.common.bus.base import ERROR_HEADER, ORIGIN_HEADER
from services.common.bus.factory import make_bus
from services.common.bus.inprocess import InProcessBus
from services.common.config import BusConfig


@pytest.fixture
def bus() -> InProcessBus:
    return InProcessBus()


def drain(consumer, max_polls: int = 20) -> int:
    """Poll until a poll handles nothing; total handled."""
    total = 0
    for _ in range(max_polls):
        n = consumer.poll(0.01)
        if n == 0:
            return total
        total += n
    return total


def test_publish_consume_with_key_and_headers(bus: InProcessBus) -> None:
    bus.publish("frames", b"v1", key="cam-1", headers={"trace": "abc", "raw": b"\x00\x01"})
    bus.publish("frames", b"v2", key=b"cam-2")
    bus.flush()
    seen: list[Message] = []
    consumer = bus.consumer(["frames"], "g", seen.append)

    assert drain(consumer) == 2

    assert [m.value for m in seen] == [b"v1", b"v2"]
    assert [m.key for m in seen] == [b"cam-1", b"cam-2"]
    assert seen[0].headers == {"trace": b"abc", "raw": b"\x00\x01"}
    assert seen[1].headers == {}
    assert [m.offset for m in seen] == [0, 1]
    assert all(m.topic == "frames" and m.timestamp_ms > 0 for m in seen)
    assert bus.committed("g", "frames") == 2


def test_retryable_error_retries_same_message_before_later_ones(bus: InProcessBus) -> None:
    for i in range(3):
        bus.publish("t", b"%d" % i)
    calls: list[bytes] = []
    committed_while_failing: list[int] = []
    failures = {"left": 2}

    def handler(msg: Message) -> None:
        calls.append(msg.value)
        if msg.value == b"1" and failures["left"] > 0:
            failures["left"] -= 1
            committed_while_failing.append(bus.committed("g", "t"))
            raise RetryableError("dependency down")

    consumer = bus.consumer(["t"], "g", handler)
    consumer._backoff0 = 0.001  # bus.consumer() has no back-off knob; keep it out of the run time

    assert drain(consumer) == 3

    assert calls == [b"0", b"1", b"1", b"1", b"2"]
    assert committed_while_failing == [1, 1]
    assert bus.committed("g", "t") == 3
    assert consumer.dead_lettered == 0


def test_interrupted_retry_commits_nothing_and_resumes_there(bus: InProcessBus) -> None:
    for i in range(3):
        bus.publish("t", b"%d" % i)
    stop = threading.Event()
    calls: list[bytes] = []

    def handler(msg: Message) -> None:
        calls.append(msg.value)
        if msg.value == b"1":
            stop.set()  # shutdown arrives while the dependency is down
            raise RetryableError("down")

    consumer = bus.consumer(["t"], "g", handler)
    consumer.run(stop)

    assert calls == [b"0", b"1"]
    assert bus.committed("g", "t") == 1

    again: list[bytes] = []
    assert drain(bus.consumer(["t"], "g", lambda m: again.append(m.value))) == 2
    assert again == [b"1", b"2"]


def test_same_group_resumes_from_committed_offset(bus: InProcessBus) -> None:
    for i in range(3):
        bus.publish("t", b"%d" % i)
    first: list[bytes] = []
    c1 = bus.consumer(["t"], "g", lambda m: first.append(m.value))
    assert drain(c1) == 3
    c1.close()

    for i in range(3, 5):
        bus.publish("t", b"%d" % i)
    second: list[bytes] = []
    assert drain(bus.consumer(["t"], "g", lambda m: second.append(m.value))) == 2

    assert first == [b"0", b"1", b"2"]
    assert second == [b"3", b"4"]


def test_other_group_starts_from_beginning(bus: InProcessBus) -> None:
    for i in range(3):
        bus.publish("t", b"%d" % i)
    assert drain(bus.consumer(["t"], "g1", lambda m: None)) == 3

    other: list[bytes] = []
    assert drain(bus.consumer(["t"], "g2", lambda m: other.append(m.value))) == 3
    assert other == [b"0", b"1", b"2"]


def test_poison_message_goes_to_dead_letter_and_stream_continues(bus: InProcessBus) -> None:
    bus.publish("t", b"ok-1")
    bus.publish("t", b"bad", key="k", headers={"trace": "xyz"})
    bus.publish("t", b"ok-2")
    good: list[bytes] = []

    def handler(msg: Message) -> None:
        if msg.value == b"bad":
            raise PoisonMessage("cannot decode")
        good.append(msg.value)

    consumer = bus.consumer(["t"], "g", handler, dead_letter_topic="t.dlq")
    assert drain(consumer) == 3

    assert good == [b"ok-1", b"ok-2"]
    assert bus.committed("g", "t") == 3
    assert consumer.dead_lettered == 1
    [dead] = bus.messages("t.dlq")
    assert dead.value == b"bad"
    assert dead.key == b"k"
    assert dead.headers["trace"] == b"xyz"
    assert dead.headers[ERROR_HEADER] == b"poison: cannot decode"
    assert dead.headers[ORIGIN_HEADER] == b"t/0/1"


def test_generic_exception_dead_lettered_after_max_attempts(bus: InProcessBus) -> None:
    bus.publish("t", b"boom")
    bus.publish("t", b"fine")
    attempts: list[bytes] = []

    def handler(msg: Message) -> None:
        attempts.append(msg.value)
        if msg.value == b"boom":
            raise ValueError("handler bug")

    consumer = bus.consumer(["t"], "g", handler, dead_letter_topic="t.dlq", max_attempts=3)
    consumer._backoff0 = 0.001
    assert drain(consumer) == 2

    assert attempts == [b"boom"] * 3 + [b"fine"]
    [dead] = bus.messages("t.dlq")
    assert dead.value == b"boom"
    assert dead.headers[ERROR_HEADER] == b"ValueError: handler bug"
    assert dead.headers[ORIGIN_HEADER] == b"t/0/0"
    assert bus.committed("g", "t") == 2


def test_factory_picks_in_process_bus() -> None:
    assert isinstance(make_bus(BusConfig(kind="inprocess")), InProcessBus)


def test_factory_kafka_bus_does_not_connect() -> None:
    from services.common.bus.kafka import KafkaBus

    # nothing listens on port 1: building the bus (and a consumer) must not try to connect
    bus = make_bus(BusConfig(kind="kafka", bootstrap="127.0.0.1:1"))
    assert isinstance(bus, KafkaBus)
    bus.consumer(["t"], "g", lambda m: None)
    bus.close()
