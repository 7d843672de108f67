"""The bus semantics of services.common.bus.base, on KafkaBus against a real Tansu broker."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.common.bus import Message, PoisonMessage, RetryableError
from services.common.bus.base import ERROR_HEADER, ORIGIN_HEADER
from services.common.bus.kafka import BrokerUnavailable, Compression, KafkaBus, KafkaGroupConsumer
from services.common.config import BusConfig
from tests.fixtures.tansu import TansuBroker
from tests.fixtures.tcp_proxy import TcpProxy

ConfigFactory = Callable[..., BusConfig]
Names = Callable[[str], str]


class Crash(BaseException):
    """Escapes the consumer's error handling, as a killed process would."""


@pytest.fixture
def kbus(kafka_bus_config: ConfigFactory) -> Iterator[KafkaBus]:
    bus = KafkaBus(kafka_bus_config(), client_id="test")
    yield bus
    bus.close()


def poll_until(consumer: KafkaGroupConsumer, done: Callable[[], bool], timeout_s: float = 15.0) -> None:
    """Poll until `done()`; fail after `timeout_s` (the first poll includes the ~3 s group join)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out waiting for records"
        consumer.poll(0.2)


def poll_for(consumer: KafkaGroupConsumer, seconds: float) -> int:
    """Poll for `seconds`; how many records were handled."""
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += consumer.poll(0.2)
    return n


def consume(bus: KafkaBus, topic: str, group: str, n: int) -> list[bytes]:
    """The values of the next `n` records `group` gets from `topic`, then close."""
    seen: list[bytes] = []
    consumer = bus.consumer([topic], group, lambda m: seen.append(m.value))
    poll_until(consumer, lambda: len(seen) >= n)
    consumer.close()
    return seen


def publish_all(bus: KafkaBus, topic: str, values: list[bytes], key: str | None = "k") -> None:
    for v in values:
        bus.publish(topic, v, key=key)
    bus.flush()


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_keys_and_headers_round_trip(
    kafka_bus_config: ConfigFactory, unique_topic: Names, compression: Compression
) -> None:
    kbus = KafkaBus(kafka_bus_config(), client_id="test", compression=compression)
    topic, group = unique_topic("t"), unique_topic("g")
    kbus.publish(topic, b"a", key="cam-1", headers={"trace": "abc", "raw": b"\x00\xff"})
    kbus.publish(topic, b"b", key=b"cam-2")
    kbus.publish(topic, b"c")
    kbus.flush()
    seen: dict[bytes, Message] = {}
    consumer = kbus.consumer([topic], group, lambda m: seen.__setitem__(m.value, m))

    poll_until(consumer, lambda: len(seen) == 3)

    assert seen[b"a"].key == b"cam-1"
    assert seen[b"a"].headers == {"trace": b"abc", "raw": b"\x00\xff"}
    assert seen[b"b"].key == b"cam-2"
    assert seen[b"b"].headers == {}
    assert seen[b"c"].key is None
    assert all(m.topic == topic and m.timestamp_ms > 0 for m in seen.values())
    kbus.close()


def test_consumer_of_missing_topic_waits_then_receives(kbus: KafkaBus, unique_topic: Names) -> None:
    topic, group = unique_topic("t"), unique_topic("g")
    seen: list[bytes] = []
    consumer = kbus.consumer([topic], group, lambda m: seen.append(m.value))
    assert poll_for(consumer, 0.5) == 0

    publish_all(kbus, topic, [b"first"])

    poll_until(consumer, lambda: seen == [b"first"])
    consumer.close()


@pytest.mark.slow
def test_crash_before_commit_redelivers_unhandled(kbus: KafkaBus, unique_topic: Names) -> None:
    topic, group = unique_topic("t"), unique_topic("g")
    publish_all(kbus, topic, [b"0", b"1", b"2"])
    seen: list[bytes] = []

    def handler(msg: Message) -> None:
        if msg.value == b"3":
            raise Crash
        seen.append(msg.value)

    consumer = kbus.consumer([topic], group, handler)
    poll_until(consumer, lambda: len(seen) == 3)
    publish_all(kbus, topic, [b"3", b"4"])
    with pytest.raises(Crash):
        poll_until(consumer, lambda: False)
    consumer.close()

    after: list[bytes] = []
    again = kbus.consumer([topic], group, lambda m: after.append(m.value))
    poll_until(again, lambda: len(after) == 2)
    assert poll_for(again, 0.3) == 0

    assert seen == [b"0", b"1", b"2"]
    assert after == [b"3", b"4"]
    again.close()


# A consumer process that handles until it meets b"3", then dies inside the handler.
_CRASHING_CHILD = """
import os, sys
from services.common.bus.kafka import KafkaBus
from services.common.config import BusConfig

bootstrap, topic, group = sys.argv[1:4]
bus = KafkaBus(BusConfig(kind="kafka", bootstrap=bootstrap))

def handler(msg):
    if msg.value == b"3":
        os._exit(17)  # no commit, no LeaveGroup: a power cut
    print(msg.value.decode(), flush=True)

consumer = bus.consumer([topic], group, handler)
while True:
    if consumer.poll(0.2):
        print("committed", flush=True)  # poll() returns after its commit
"""


@pytest.mark.slow
def test_killed_consumer_process_redelivers_unhandled(kbus: KafkaBus, tansu: TansuBroker, unique_topic: Names) -> None:
    topic, group = unique_topic("t"), unique_topic("g")
    publish_all(kbus, topic, [b"0", b"1", b"2"])
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_CHILD, tansu.bootstrap, topic, group],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        lines: list[str] = []
        while len(lines) < 3 or lines[-1] != "committed":
            line = child.stdout.readline().strip()
            assert line, "child exited early"
            lines.append(line)
        assert [x for x in lines if x != "committed"] == ["0", "1", "2"]
        publish_all(kbus, topic, [b"3", b"4"])
        assert child.wait(timeout=15) == 17
    finally:
        child.kill()
        child.wait()

    after: list[bytes] = []
    again = kbus.consumer([topic], group, lambda m: after.append(m.value))
    # the dead member holds its partitions until its session (6 s) expires
    poll_until(again, lambda: len(after) >= 2, timeout_s=25)
    again.close()
    assert after == [b"3", b"4"]


@pytest.mark.slow
def test_restart_resumes_exactly_at_committed_offset(kbus: KafkaBus, unique_topic: Names) -> None:
    topic, group = unique_topic("t"), unique_topic("g")
    # several keys, so several partitions each with its own committed offset
    first = [f"{k}-{i}".encode() for i in range(5) for k in "abcd"]
    for v in first:
        kbus.publish(topic, v, key=v[:1])
    kbus.flush()
    seen1: list[bytes] = []
    c1 = kbus.consumer([topic], group, lambda m: seen1.append(m.value))
    poll_until(c1, lambda: len(seen1) == len(first))
    c1.close()

    second = [f"{k}-{i}".encode() for i in range(5, 10) for k in "abcd"]
    for v in second:
        kbus.publish(topic, v, key=v[:1])
    kbus.flush()
    seen2: list[bytes] = []
    c2 = kbus.consumer([topic], group, lambda m: seen2.append(m.value))
    poll_until(c2, lambda: len(seen2) >= len(second))
    assert poll_for(c2, 0.5) == 0
    c2.close()

    assert sorted(seen1) == sorted(first)
    assert sorted(seen2) == sorted(second)
    # order within a key (one partition) is kept
    for k in b"abcd":
        assert [v for v in seen2 if v[0] == k] == [v for v in second if v[0] == k]


@pytest.mark.slow
def test_other_group_starts_from_beginning(kbus: KafkaBus, unique_topic: Names) -> None:
    topic = unique_topic("t")
    publish_all(kbus, topic, [b"0", b"1"])
    assert consume(kbus, topic, unique_topic("g1"), 2) == [b"0", b"1"]
    assert consume(kbus, topic, unique_topic("g2"), 2) == [b"0", b"1"]


@pytest.mark.slow
def test_poison_message_dead_lettered_and_stream_continues(kbus: KafkaBus, unique_topic: Names) -> None:
    topic, group = unique_topic("t"), unique_topic("g")
    dlq = topic + ".dlq"
    kbus.publish(topic, b"ok-1", key="k")
    kbus.publish(topic, b"bad", key="k", headers={"trace": "xyz"})
    kbus.publish(topic, b"ok-2", key="k")
    kbus.flush()
    good: list[bytes] = []

    def handler(msg: Message) -> None:
        if msg.value == b"bad":
            raise PoisonMessage("cannot decode")
        good.append(msg.value)

    consumer = kbus.consumer([topic], group, handler, dead_letter_topic=dlq)
    poll_until(consumer, lambda: len(good) == 2)
    assert good == [b"ok-1", b"ok-2"]
    assert consumer.dead_lettered == 1
    consumer.close()

    dead: list[Message] = []
    reader = kbus.consumer([dlq], unique_topic("dlq-reader"), dead.append)
    poll_until(reader, lambda: len(dead) == 1)
    reader.close()
    [msg] = dead
    assert msg.value == b"bad"
    assert msg.key == b"k"
    assert msg.headers["trace"] == b"xyz"
    assert msg.headers[ERROR_HEADER] == b"poison: cannot decode"
    origin = msg.headers[ORIGIN_HEADER].decode()
    assert origin.startswith(f"{topic}/") and origin.endswith("/1")

    # everything, the poison message included, was committed: the group resumes after it
    publish_all(kbus, topic, [b"ok-3"])
    assert consume(kbus, topic, group, 1) == [b"ok-3"]


def test_three_megabyte_message(kbus: KafkaBus, unique_topic: Names) -> None:
    topic, group = unique_topic("t"), unique_topic("g")
    big = os.urandom(3 * 1024 * 1024)
    publish_all(kbus, topic, [big, b"small"])
    seen: list[bytes] = []
    consumer = kbus.consumer([topic], group, lambda m: seen.append(m.value))

    poll_until(consumer, lambda: len(seen) == 2)

    assert hashlib.sha256(seen[0]).digest() == hashlib.sha256(big).digest()
    assert seen[1] == b"small"
    consumer.close()


def test_create_topics_ignores_existing(kbus: KafkaBus, unique_topic: Names) -> None:
    a, b = unique_topic("a"), unique_topic("b")
    assert sorted(kbus.create_topics([a, b], num_partitions=2)) == sorted([a, b])
    assert kbus.create_topics([a, b]) == []
    publish_all(kbus, a, [b"x"])


def test_publish_without_broker_raises_retryable_after_timeout() -> None:
    bus = KafkaBus(BusConfig(kind="kafka", bootstrap="127.0.0.1:1", publish_timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        bus.publish("t", b"x")
    assert isinstance(caught.value, RetryableError)  # a handler that lets it escape is retried
    assert time.monotonic() - started < 5
    bus.close()


# -- the broker going away -------------------------------------------------------------


@pytest.mark.slow
def test_broker_away_mid_stream_loses_nothing(
    proxied_broker: tuple[TcpProxy, TansuBroker], unique_topic: Names
) -> None:
    """A relay (consume, publish, commit) keeps going across an outage longer than its session."""
    proxy, _ = proxied_broker
    src, dst, group = unique_topic("src"), unique_topic("dst"), unique_topic("g")
    bus = KafkaBus(BusConfig(kind="kafka", bootstrap=proxy.address, publish_timeout_s=30), client_id="away")
    relayed: list[bytes] = []

    def relay(msg: Message) -> None:
        time.sleep(0.02)  # slow enough that the cut lands in the middle of a fetched batch
        bus.publish(dst, msg.value, key=msg.key)
        relayed.append(msg.value)

    consumer = bus.consumer([src], group, relay)
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop, 0.2), daemon=True)
    values = [b"%03d" % i for i in range(90)]
    try:
        publish_all(bus, src, values[:40])
        worker.start()
        _wait(lambda: len(relayed) >= 10, 15)

        proxy.cut()
        for v in values[40:60]:
            bus.publish(src, v, key="k")  # queued while the broker is away
        # longer than session_timeout_ms (6 s)
        threading.Timer(7.0, proxy.restore).start()
        bus.flush()  # blocks until the link is back, then everything is acknowledged
        assert not proxy.is_cut
        publish_all(bus, src, values[60:])

        _wait(lambda: set(relayed) >= set(values), 20)
    finally:
        stop.set()
        worker.join(timeout=10)
    # at least once: re-delivery is allowed, loss and reordering are not
    assert list(dict.fromkeys(relayed)) == values
    out: list[bytes] = []
    reader = bus.consumer([dst], unique_topic("reader"), lambda m: out.append(m.value))
    poll_until(reader, lambda: set(out) >= set(values))
    assert list(dict.fromkeys(out)) == values
    bus.close()


@pytest.mark.slow
def test_outage_longer_than_publish_timeout_rehandles_batch(
    proxied_broker: tuple[TcpProxy, TansuBroker], unique_topic: Names
) -> None:
    """When a handler's output cannot be delivered in time, its input is handled again, not committed."""
    proxy, _ = proxied_broker
    src, dst, group = unique_topic("src"), unique_topic("dst"), unique_topic("g")
    bus = KafkaBus(BusConfig(kind="kafka", bootstrap=proxy.address, publish_timeout_s=2), client_id="short")
    relayed: list[bytes] = []

    def relay(msg: Message) -> None:
        time.sleep(0.02)
        bus.publish(dst, msg.value, key=msg.key)
        relayed.append(msg.value)

    consumer = bus.consumer([src], group, relay)
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run, args=(stop, 0.2), daemon=True)
    values = [b"%03d" % i for i in range(40)]
    try:
        publish_all(bus, src, values)
        worker.start()
        _wait(lambda: len(relayed) >= 5, 15)
        proxy.cut()
        time.sleep(4.0)  # twice the publish timeout: the relay's flush fails
        proxy.restore()
        _wait(lambda: set(relayed) >= set(values), 45)
        out: list[bytes] = []
        reader = bus.consumer([dst], unique_topic("reader"), lambda m: out.append(m.value))
        poll_until(reader, lambda: set(out) >= set(values), timeout_s=45)
    finally:
        stop.set()
        worker.join(timeout=10)
        bus.close()
    assert len(relayed) > len(values)  # the failed batch was handled twice
    assert list(dict.fromkeys(out)) == values


@pytest.mark.slow
def test_consumer_started_while_broker_away(proxied_broker: tuple[TcpProxy, TansuBroker], unique_topic: Names) -> None:
    proxy, _ = proxied_broker
    topic, group = unique_topic("t"), unique_topic("g")
    proxy.cut()
    bus = KafkaBus(BusConfig(kind="kafka", bootstrap=proxy.address, publish_timeout_s=20), client_id="late")
    seen: list[bytes] = []
    consumer = bus.consumer([topic], group, lambda m: seen.append(m.value))
    threads_before = threading.active_count()
    try:
        assert poll_for(consumer, 2.0) == 0
        assert threading.active_count() <= threads_before + 1  # no thread leaked per failed attempt
        proxy.restore()
        publish_all(bus, topic, [b"hello"])
        poll_until(consumer, lambda: seen == [b"hello"])
    finally:
        bus.close()


def _wait(done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
