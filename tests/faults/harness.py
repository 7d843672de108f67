"""The distributed edge pipeline as real processes on a broker that keeps its data, with faults on demand.

Every service runs as `python -m services.<name>`, as in a pod, against Tansu on S3 (SeaweedFS)
reached through a TCP proxy, so a case can SIGKILL any service or the broker, cut the network, and
restart them. Alerts are read from the cloud alerts topic the way a user would consume them; a case
then compares the unique alerts (by event id) with the undisturbed run's and counts duplicates.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from services.common.bus import Message
from services.common.bus.kafka import KafkaBus
from services.common.config import BusConfig
from tests.fixtures.seaweed import S3Server
from tests.fixtures.tansu import TansuBroker
from tests.fixtures.tcp_proxy import TcpProxy, free_port
from vigil.alert.v1 import alert_pb2

ROOT = Path(__file__).resolve().parents[2]
CAMERA = "yard"
FPS = 5.0
# Services whose processes a case may kill; ingest is the job that feeds them.
SERVICES = ("gating", "uplink", "indexing", "memory")


@dataclass
class Outcome:
    """What a run delivered."""

    alert_ids: list[str]
    wall_s: float
    # Seconds from a fault's end (restart, reconnect) to the first alert after it; None when none followed.
    recovery_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def unique(self) -> int:
        """Distinct alerts."""
        return len(set(self.alert_ids))

    @property
    def duplicates(self) -> int:
        """Alerts delivered more than once (by event id)."""
        return sum(n - 1 for n in Counter(self.alert_ids).values() if n > 1)


class FaultPipeline:
    """S3 + Tansu (behind a proxy) + the edge services as processes, on one video; see the module docstring."""

    def __init__(self, workdir: Path, video: Path, services: Iterable[str] = ("gating", "uplink")) -> None:
        self.workdir = workdir
        self.video = video
        self.services = list(services)
        self.s3 = S3Server().start()
        broker_port = free_port()
        self.proxy = TcpProxy("127.0.0.1", broker_port)
        self.proxy_port = self.proxy.port
        self.broker = TansuBroker(
            broker_port, advertised_port=self.proxy_port, storage_engine="s3://tansu/", env=self.s3.client_env()
        ).start()
        suffix = uuid.uuid4().hex[:8]
        self.topics = {t: f"faults.{t}.{suffix}" for t in ("frames", "events", "alerts", "evidence", "index")}
        self.memory_port = free_port()
        self.env = {
            **os.environ,
            "VIGIL_BUS__KIND": "kafka",
            "VIGIL_BUS__BOOTSTRAP": self.bootstrap,
            **{f"VIGIL_TOPICS__{t.upper()}": name for t, name in self.topics.items()},
            "VIGIL_GATING__CONSUMER_GROUP": f"faults-gating-{suffix}",
            "VIGIL_UPLINK__CONSUMER_GROUP": f"faults-uplink-{suffix}",
            "VIGIL_INDEXING__CONSUMER_GROUP": f"faults-indexing-{suffix}",
            "VIGIL_MEMORY__FRAMES_CONSUMER_GROUP": f"faults-memory-frames-{suffix}",
            "VIGIL_MEMORY__INDEX_CONSUMER_GROUP": f"faults-memory-index-{suffix}",
            "VIGIL_MEMORY__STORE__TYPE": "qdrant-edge",
            "VIGIL_MEMORY__STORE__PATH": str(workdir / "memory" / "qdrant"),
            "VIGIL_MEMORY__FRAMES__PATH": str(workdir / "memory" / "frames"),
            # The uplink's delivery log on "its volume", as the chart mounts one: alerts sent before a crash
            # are not sent again after it.
            "VIGIL_UPLINK__STATE_DIR": str(workdir / "uplink-state"),
            # Gating's incident checkpoint on its volume, as the edge chart mounts one: an incident alerted
            # before a crash is continued after it, not alerted again with a new id.
            "VIGIL_GATING__STATE_DIR": str(workdir / "gating-state"),
            "VIGIL_INGEST__SOURCE": str(video),
            "VIGIL_INGEST__CAMERA_ID": CAMERA,
            "VIGIL_INGEST__FPS": str(FPS),
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.alerts: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        setup = KafkaBus(BusConfig(kind="kafka", bootstrap=self.bootstrap))
        setup.create_topics(list(self.topics.values()))
        setup.close()
        self._sink = threading.Thread(target=self._collect, name="fault-alert-sink", daemon=True)
        self._sink.start()

    @property
    def bootstrap(self) -> str:
        """Where clients connect: the proxy, which a case can cut."""
        return f"127.0.0.1:{self.proxy_port}"

    def _collect(self) -> None:
        """Every alert on the alerts topic, with when it arrived; duplicates kept (that is what is counted)."""
        bus = KafkaBus(BusConfig(kind="kafka", bootstrap=self.bootstrap))

        def on_alert(msg: Message) -> None:
            alert = alert_pb2.Alert.FromString(msg.value)
            with self._lock:
                self.alerts.append((time.monotonic(), alert.event_id))

        consumer = bus.consumer([self.topics["alerts"]], f"faults-sink-{uuid.uuid4().hex[:8]}", on_alert)
        try:
            consumer.run(self._stop)
        finally:
            consumer.close()
            bus.close()

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """Start one service (or the ingest job) as its own process, logging to the work directory."""
        env = dict(self.env)
        if name == "memory":
            env["VIGIL_GRPC_ADDRESS"] = f"127.0.0.1:{self.memory_port}"
        elif name != "ingest":
            env["VIGIL_GRPC_ADDRESS"] = "127.0.0.1:0"
        with open(self.workdir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.procs[name] = proc
        return proc

    def read_topic(self, topic: str, count: int, timeout_s: float = 30.0) -> list[Message]:
        """The first `count` records of `topic` (fewer when the timeout comes first), read by a fresh group."""
        got: list[Message] = []
        stop = threading.Event()

        def on_record(msg: Message) -> None:
            got.append(msg)
            if len(got) >= count:
                stop.set()

        bus = KafkaBus(BusConfig(kind="kafka", bootstrap=self.bootstrap))
        consumer = bus.consumer([topic], f"faults-read-{uuid.uuid4().hex[:8]}", on_record)
        timer = threading.Timer(timeout_s, stop.set)
        timer.start()
        try:
            consumer.run(stop)
        finally:
            timer.cancel()
            consumer.close()
            bus.close()
        return got

    def kill(self, name: str) -> None:
        """SIGKILL a service, as the OOM killer or a node loss would."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def alert_count(self) -> int:
        """Alerts seen so far (duplicates included)."""
        with self._lock:
            return len(self.alerts)

    def wait_for(self, predicate: object, timeout_s: float, what: str) -> None:
        """Poll `predicate()` until true; AssertionError naming `what` (and the logs) on timeout."""
        deadline = time.monotonic() + timeout_s
        while not predicate():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.log_tails()}")
            time.sleep(0.2)

    def unique_alerts(self) -> int:
        """Distinct alerts seen so far."""
        with self._lock:
            return len({eid for _, eid in self.alerts})

    def settle(self, expected: int | None = None, quiet_s: float = 10.0, timeout_s: float = 180.0) -> None:
        """Wait for ingest to finish, for `expected` unique alerts (if given), then for `quiet_s` with no new alert.

        Waiting for the count rather than only for quiet: after a broker outage the clients reconnect with
        back-off, and a quiet spell during that is not the end. A count never reached is the case's failure,
        reported by the caller after `timeout_s`; the quiet spell after it catches a late duplicate.
        """
        ingest = self.procs.get("ingest")
        if ingest is not None:
            self.wait_for(lambda: ingest.poll() is not None, timeout_s, "ingest to finish")
        deadline = time.monotonic() + timeout_s
        while expected is not None and self.unique_alerts() < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        last, since = self.alert_count(), time.monotonic()
        while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
            time.sleep(0.5)
            if (n := self.alert_count()) != last:
                last, since = n, time.monotonic()

    def outcome(self, t0: float, fault_end: float | None = None) -> Outcome:
        """What was delivered since `t0`; recovery time from `fault_end` to the next alert."""
        with self._lock:
            alerts = list(self.alerts)
        recovery = None
        if fault_end is not None:
            after = [t for t, _ in alerts if t >= fault_end]
            recovery = (min(after) - fault_end) if after else None
        return Outcome([eid for _, eid in alerts], time.monotonic() - t0, recovery)

    def log_tails(self, n_bytes: int = 2500) -> str:
        """The end of every service's log, for a failure message."""
        parts = []
        for name in self.procs:
            path = self.workdir / f"{name}.log"
            if path.exists():
                tail = path.read_bytes()[-n_bytes:].decode(errors="replace")
                parts.append(f"--- {name} (exit {self.procs[name].poll()}):\n{tail}")
        return "\n".join(parts)

    def close(self) -> None:
        """Stop everything."""
        self._stop.set()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._sink.join(timeout=10)
        self.proxy.close()
        self.broker.close()
        self.s3.close()
