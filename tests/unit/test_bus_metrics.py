"""The bus counts what it dead-letters, by source topic and reason (the dashboard's DLQ panel, the DLQ rule)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from services.common.bus import Message, PoisonMessage
from services.common.bus.inprocess import InProcessBus


def _count(topic: str, reason: str) -> float:
    return REGISTRY.get_sample_value("vigil_bus_dead_lettered_total", {"topic": topic, "reason": reason}) or 0.0


def test_dead_letters_are_counted_by_reason() -> None:
    bus = InProcessBus()

    def handler(msg: Message) -> None:
        if msg.value == b"poison":
            raise PoisonMessage("undecodable")
        if msg.value == b"bug":
            raise RuntimeError("handler bug")

    consumer = bus.consumer(["t.metrics"], "g", handler, dead_letter_topic="t.metrics.dlq", max_attempts=1)
    before = _count("t.metrics", "poison"), _count("t.metrics", "failed")
    for value in (b"ok", b"poison", b"bug", b"poison"):
        bus.publish("t.metrics", value)
    while consumer.poll(0.1):
        pass
    assert consumer.dead_lettered == 3
    assert _count("t.metrics", "poison") - before[0] == 2
    assert _count("t.metrics", "failed") - before[1] == 1


def test_dropped_without_a_dead_letter_topic_is_counted_too() -> None:
    bus = InProcessBus()

    def handler(msg: Message) -> None:
        raise PoisonMessage("undecodable")

    consumer = bus.consumer(["t.nodlq"], "g", handler)
    bus.publish("t.nodlq", b"x")
    while consumer.poll(0.1):
        pass
    assert _count("t.nodlq", "poison-dropped") == 1
