"""`vigil alerts`: print the alert topic, de-duplicated by event id, optionally following it."""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from typing import Any

from services.cli.output import alert_record, format_alert
from services.common.bus import Message
from services.common.bus.factory import make_bus
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
    alerts.set_defaults(func=cmd_alerts)


def cmd_alerts(args: argparse.Namespace) -> int:
    """`vigil alerts`: print the alert topic (de-duplicated by event id), optionally following it."""
    # Topic names come from settings (VIGIL_TOPICS__ALERTS), like every service's.
    topic = args.topic or CommonSettings().topics.alerts
    bus = make_bus(BusConfig(kind="kafka", bootstrap=args.kafka), client_id="vigil-alerts")
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
