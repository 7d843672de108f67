"""`vigil alerts`: print the alert topic, de-duplicated by event id, optionally following it."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
import uuid
from typing import Any

from kafka.errors import KafkaError

from services.cli.output import format_alert
from services.common.alerts import alert_record
from services.common.bus import Message
from services.common.bus.factory import make_bus
from services.common.bus.kafka import KafkaBus
from services.common.config import BusConfig, CommonSettings
from vigil.alert.v1 import alert_pb2


def register(sub: Any) -> None:
    """Add `vigil alerts`."""
    alerts = sub.add_parser("alerts", help="print the alert topic")
    alerts.add_argument("--kafka", metavar="BOOTSTRAP", required=True)
    alerts.add_argument("--follow", action="store_true", help="keep waiting for new alerts")
    alerts.add_argument("--json", action="store_true")
    alerts.add_argument("--topic", help="alert topic (default from settings)")
    alerts.add_argument("--group", help="consumer group to resume from (default: a new one, from the start)")
    alerts.add_argument("--idle-exit", type=float, default=5.0, help="without --follow, exit after this idle time")
    alerts.add_argument(
        "--connect-timeout", type=float, default=10.0, help="seconds to wait for the broker to answer at start"
    )
    alerts.set_defaults(func=cmd_alerts)


def cmd_alerts(args: argparse.Namespace) -> int:
    """`vigil alerts`: print the alert topic (de-duplicated by event id), optionally following it."""
    # Topic names come from settings (VIGIL_TOPICS__ALERTS), like every service's.
    topic = args.topic or CommonSettings().topics.alerts
    bus = make_bus(BusConfig(kind="kafka", bootstrap=args.kafka), client_id="vigil-alerts")
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    try:
        # No broker must not look like "no alerts": ask it once before consuming (the consumer would retry
        # quietly). The client's per-attempt connection errors would bury the one line below.
        kafka_log.setLevel(logging.CRITICAL)
        if isinstance(bus, KafkaBus):
            bus.broker_version(int(args.connect_timeout * 1000))
    except KafkaError as exc:
        bus.close()
        print(
            f"vigil alerts: no Kafka broker answered at {args.kafka} within {args.connect_timeout:g}s ({exc})",
            file=sys.stderr,
        )
        return 3
    finally:
        kafka_log.setLevel(level)
    seen: set[str] = set()
    last_message = [time.monotonic()]

    def handle(msg: Message) -> None:
        last_message[0] = time.monotonic()
        alert = alert_pb2.Alert.FromString(msg.value)
        if alert.event_id in seen:
            return
        seen.add(alert.event_id)
        line = json.dumps(alert_record(alert)) if args.json else format_alert(alert)
        print(line, flush=True)

    group = args.group or f"vigil-alerts-cli-{uuid.uuid4().hex[:8]}"
    consumer = bus.consumer([topic], group, handle)
    stop = threading.Event()
    try:
        while not stop.is_set():
            consumer.poll(1.0)
            if not args.follow and time.monotonic() - last_message[0] > args.idle_exit:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
        bus.close()
    return 0
