"""The message bus: one interface, an in-process implementation and a Kafka one."""

from services.common.bus.base import (
    Bus,
    Consumer,
    ConsumerFailing,
    Handler,
    Message,
    PoisonMessage,
    RetryableError,
)

__all__ = ["Bus", "Consumer", "ConsumerFailing", "Handler", "Message", "PoisonMessage", "RetryableError"]
