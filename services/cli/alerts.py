"""`vigil alerts`: print the alert topic, de-duplicated by event id, optionally following it."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from services.cli.output import format_alert
from services.common.alerts import alert_record
from services.common.auth import CredentialsError
from services.common.bus import Message
from services.common.bus.factory import make_bus
from services.common.bus.kafka import KafkaBus
from services.common.config import CommonSettings
from services.common.signing import BadSignature, verifier_from_config
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
    alerts.add_argument(
        "--signing-keys",
        type=Path,
        metavar="FILE",
        help="verify the uplink's signatures with these keys ('KEY_ID SECRET' lines; or VIGIL_SIGNING__KEYS_FILE): "
        "unsigned or forged records are counted and dead-lettered to TOPIC.dlq, never printed",
    )
    alerts.set_defaults(func=cmd_alerts)


def cmd_alerts(args: argparse.Namespace) -> int:
    """`vigil alerts`: print the alert topic (de-duplicated by event id), optionally following it."""
    # Topic names come from settings (VIGIL_TOPICS__ALERTS), like every service's.
    settings = CommonSettings()
    topic = args.topic or settings.topics.alerts
    signing = settings.signing
    if args.signing_keys is not None:
        signing = signing.model_copy(update={"keys_file": args.signing_keys, "required": True})
    try:
        verifier = verifier_from_config(signing)
        # TLS and SASL come from VIGIL_BUS__* (security_protocol, ssl_cafile, sasl_username, ...).
        bus = make_bus(
            settings.bus.model_copy(update={"kind": "kafka", "bootstrap": args.kafka}), client_id="vigil-alerts"
        )
    except (CredentialsError, ValueError) as exc:
        print(f"vigil alerts: {exc}", file=sys.stderr)
        return 2
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

    rejected = [0]

    def handle(msg: Message) -> None:
        last_message[0] = time.monotonic()
        if verifier is not None:
            try:
                verifier.verify(msg)
            except BadSignature:
                rejected[0] += 1
                raise
        alert = alert_pb2.Alert.FromString(msg.value)
        if alert.event_id in seen:
            return
        seen.add(alert.event_id)
        line = json.dumps(alert_record(alert)) if args.json else format_alert(alert)
        print(line, flush=True)

    group = args.group or f"vigil-alerts-cli-{uuid.uuid4().hex[:8]}"
    # With verification on, what fails it goes to the dead-letter topic for someone to look at.
    dead_letter = settings.topics.dead_letter(topic) if verifier is not None else None
    consumer = bus.consumer([topic], group, handle, dead_letter_topic=dead_letter)
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
    if rejected[0]:
        print(
            f"vigil alerts: {rejected[0]} record(s) without a valid signature not shown; see {dead_letter}",
            file=sys.stderr,
        )
    return 0
