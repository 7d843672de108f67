"""Kafka (or in-process bus) entrypoint of the console: decode alert, evidence and frame records into the state."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from services.common.bus import Message, PoisonMessage
from services.common.config import TopicsConfig
from services.console import metrics
from services.console.state import ConsoleState, MalformedRecord, decode_alert, decode_evidence
from vigil.media.v1 import frame_pb2

log = logging.getLogger(__name__)


class RecordHandler:
    """One handler for the console's topics; a malformed record is counted and dead-lettered, never fatal."""

    def __init__(self, state: ConsoleState, topics: TopicsConfig, clock: Callable[[], int] = time.time_ns) -> None:
        self._state = state
        self._alerts = topics.alerts
        self._evidence = topics.evidence
        self._frames = topics.frames
        self._clock = clock

    def __call__(self, msg: Message) -> None:
        """Decode `msg` by its topic and apply it; PoisonMessage (to the dead-letter topic) when undecodable."""
        now = self._clock()
        if msg.topic == self._frames:
            self._frame(msg)
            return
        kind = "alert" if msg.topic == self._alerts else "evidence"
        try:
            if kind == "alert":
                changed = self._state.add_alert(decode_alert(msg.value, now))
            else:
                changed = self._state.add_evidence(*decode_evidence(msg.value, now))
        except MalformedRecord as exc:
            metrics.MALFORMED_RECORDS.labels(kind).inc()
            log.warning("skipping malformed record %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
            raise PoisonMessage(str(exc)) from exc
        (metrics.RECORDS if changed else metrics.DUPLICATE_RECORDS).labels(kind).inc()

    def _frame(self, msg: Message) -> None:
        try:
            frame = frame_pb2.Frame.FromString(msg.value)
        except Exception:  # frames are the edge's own; the camera table just misses one
            log.debug("undecodable frame record at %s@%d", msg.topic, msg.offset)
            return
        self._state.frame_seen(frame.camera_id, frame.capture_time_ns)
