"""Shared pytest fixtures: factories only; the machinery lives in tests/fixtures/."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.common.config import BusConfig
from tests.fixtures.tansu import TansuBroker
from tests.fixtures.tcp_proxy import TcpProxy


@pytest.fixture(scope="session")
def tansu() -> Iterator[TansuBroker]:
    """One in-memory Tansu broker for the whole session (tests isolate by unique names)."""
    broker = TansuBroker().start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory of topic (or group) names unique to this test: unique_topic("frames")."""
    test = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]

    def make(stem: str = "t") -> str:
        return f"{stem}.{test}.{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def kafka_bus_config(tansu: TansuBroker) -> Callable[..., BusConfig]:
    """Factory of BusConfig for the session broker; keyword arguments override fields."""

    def make(**overrides: Any) -> BusConfig:
        fields: dict[str, Any] = {"kind": "kafka", "bootstrap": tansu.bootstrap, "publish_timeout_s": 15.0}
        fields.update(overrides)
        return BusConfig(**fields)

    return make


@pytest.fixture
def proxied_broker() -> Iterator[tuple[TcpProxy, TansuBroker]]:
    """A broker that clients reach only through a proxy (it advertises the proxy's port)."""
    proxy = TcpProxy("127.0.0.1", 0)
    broker = TansuBroker(advertised_port=proxy.port)
    proxy.set_target("127.0.0.1", broker.port)
    broker.start()
    try:
        yield proxy, broker
    finally:
        proxy.close()
        broker.close()
