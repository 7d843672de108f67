"""Build the bus a deployment asks for; the only place that chooses an implementation."""

from __future__ import annotations

from services.common.bus.base import Bus
from services.common.bus.inprocess import InProcessBus
from services.common.config import BusConfig


def make_bus(config: BusConfig, client_id: str = "vigil") -> Bus:
    """An :class:`InProcessBus` for the embedded mode, a :class:`KafkaBus` for the distributed one."""
    if config.kind == "inprocess":
        return InProcessBus()
    if config.kind == "kafka":
        # Imported here so the embedded mode never needs kafka-python.
        from services.common.bus.kafka import KafkaBus

        return KafkaBus(config, client_id=client_id)
    raise ValueError(f"unknown bus kind {config.kind!r}")
