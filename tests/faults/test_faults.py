"""The fault suite (`make test-faults`): the edge pipeline as processes, one fault per case, nothing lost.

Each case runs the whole clip through ingest -> gating -> uplink (plus indexing -> memory where the
case is about them) on a broker that keeps its data (Tansu on S3), injects one fault once the first
alert is out (mid-stream, mid-incident), and then asserts what a user would check: the unique alerts
equal the undisturbed run's, no event id arrives twice, and the part that was hit recovers by itself.
Each case prints one JSON line (case, alerts expected/seen, duplicates, recovery time) for the table
in the README.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from services.common.bus.kafka import KafkaBus
from services.common.config import BusConfig
from tests.faults.harness import CAMERA, ROOT, FaultPipeline, Outcome
from tests.fixtures.media import shared
from tests.fixtures.volumes import take_all_space, tmpfs
from vigil.memory.v1 import memory_pb2, memory_pb2_grpc

pytestmark = [pytest.mark.slow, pytest.mark.faults]

VIDEO = shared("videos", "static_camera", "bgslibrary_video02.avi")
ALERTS_ONLY = ("gating", "uplink")
WITH_MEMORY = ("gating", "uplink", "indexing", "memory")


def report(case: str, expected: int, outcome: Outcome) -> None:
    """One JSON line per case: the fault table."""
    print(
        json.dumps(
            {
                "case": case,
                "alerts_expected": expected,
                "alerts_seen": outcome.unique,
                "duplicates": outcome.duplicates,
                "recovery_s": None if outcome.recovery_s is None else round(outcome.recovery_s, 1),
                "wall_s": round(outcome.wall_s, 1),
            }
        )
    )


@pytest.fixture
def pipeline(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[FaultPipeline]:
    services = getattr(request, "param", ALERTS_ONLY)
    p = FaultPipeline(tmp_path, VIDEO, services)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory: pytest.TempPathFactory) -> int:
    """Unique alerts of the clip with nothing going wrong (the figure every case must match)."""
    p = FaultPipeline(tmp_path_factory.mktemp("undisturbed"), VIDEO, ALERTS_ONLY)
    try:
        t0 = time.monotonic()
        for name in p.services:
            p.start(name)
        p.start("ingest")
        p.settle(quiet_s=15.0)
        outcome = p.outcome(t0)
    finally:
        p.close()
    report("undisturbed", outcome.unique, outcome)
    assert outcome.unique > 0 and outcome.duplicates == 0
    return outcome.unique


def run_with(p: FaultPipeline, fault: object, expected: int) -> Outcome:
    """Start everything, wait for the first alert, call `fault(p)` (returns when it is over), let it settle."""
    t0 = time.monotonic()
    for name in p.services:
        p.start(name)
    p.start("ingest")
    p.wait_for(lambda: p.alert_count() > 0, 240, "the first alert")
    fault(p)  # type: ignore[operator]
    fault_end = time.monotonic()
    p.settle(expected)
    return p.outcome(t0, fault_end)


def restart(name: str, down_s: float = 2.0) -> object:
    """A fault: SIGKILL `name`, leave it down for `down_s`, start it again."""

    def fault(p: FaultPipeline) -> None:
        p.kill(name)
        time.sleep(down_s)
        p.start(name)

    return fault


def check(case: str, expected: int, outcome: Outcome) -> None:
    report(case, expected, outcome)
    assert outcome.duplicates == 0, f"{case}: {outcome.duplicates} alerts delivered twice"
    assert outcome.unique == expected, f"{case}: {outcome.unique} unique alerts, the undisturbed run had {expected}"


def test_broker_sigkill_and_restart(pipeline: FaultPipeline, undisturbed: int) -> None:
    def fault(p: FaultPipeline) -> None:
        p.broker.kill()
        time.sleep(2)
        p.broker.start()

    check("broker SIGKILL + restart", undisturbed, run_with(pipeline, fault, undisturbed))


def test_broker_unreachable_for_30s(pipeline: FaultPipeline, undisturbed: int) -> None:
    """The link to the broker cut for 30 s mid-stream (the proxy refuses connections), then restored.

    Until the uplink probed its estimate (services/uplink/dispatcher.py), about half of these runs ended with
    2-3 alerts: the first send after the link returned waited for the reconnect, the bandwidth estimate fell
    to ~20 B/s, no alert fitted an interval, and the uplink held the rest forever, healthy and idle.
    """

    def fault(p: FaultPipeline) -> None:
        p.proxy.cut()
        time.sleep(30)
        p.proxy.restore()

    check("broker unreachable 30 s", undisturbed, run_with(pipeline, fault, undisturbed))


@pytest.mark.parametrize("service", ["gating", "uplink"])
def test_alert_path_service_sigkill(pipeline: FaultPipeline, undisturbed: int, service: str) -> None:
    check(f"{service} SIGKILL", undisturbed, run_with(pipeline, restart(service), undisturbed))


def describe(p: FaultPipeline) -> memory_pb2.DescribeResponse:
    with grpc.insecure_channel(f"127.0.0.1:{p.memory_port}") as channel:
        response: memory_pb2.DescribeResponse = memory_pb2_grpc.MemoryServiceStub(channel).Describe(
            memory_pb2.DescribeRequest(), timeout=10
        )
        return response


def memory_reaches_the_end(p: FaultPipeline, timeout_s: float = 240.0) -> memory_pb2.CameraMemory:
    """Wait until the memory holds clusters up to the clip's last seconds (indexing and memory caught up)."""

    def caught_up() -> bool:
        try:
            cams = {c.camera_id: c for c in describe(p).cameras}
        except grpc.RpcError:
            return False
        return CAMERA in cams and cams[CAMERA].latest_s >= 25.0

    p.wait_for(caught_up, timeout_s, "the memory to index the whole clip")
    return {c.camera_id: c for c in describe(p).cameras}[CAMERA]


@pytest.mark.parametrize("pipeline", [WITH_MEMORY], indirect=True)
@pytest.mark.parametrize("service", ["indexing", "memory"])
def test_memory_path_service_sigkill(pipeline: FaultPipeline, undisturbed: int, service: str) -> None:
    outcome = run_with(pipeline, restart(service), undisturbed)
    check(f"{service} SIGKILL", undisturbed, outcome)
    cam = memory_reaches_the_end(pipeline)
    assert cam.index_frames > 0 and cam.earliest_s < 5.0


@pytest.mark.parametrize("pipeline", [WITH_MEMORY], indirect=True)
def test_ask_while_the_memory_writes(pipeline: FaultPipeline, undisturbed: int) -> None:
    asked: list[subprocess.CompletedProcess[str]] = []

    def fault(p: FaultPipeline) -> None:
        p.wait_for(lambda: bool(describe_or_none(p)), 240, "a first cluster in the memory")
        asked.append(
            subprocess.run(
                [sys.executable, "-m", "services.cli", "ask", "a car", "--memory", str(p.workdir / "memory"), "--json"],
                cwd=ROOT,
                env=p.env,
                capture_output=True,
                text=True,
                timeout=300,
            )
        )

    outcome = run_with(pipeline, fault, undisturbed)
    check("concurrent ask", undisturbed, outcome)
    assert asked[0].returncode == 0, asked[0].stderr[-2000:]
    assert json.loads(asked[0].stdout)["keyframes"]
    memory_reaches_the_end(pipeline)
    assert pipeline.procs["memory"].poll() is None


def memory_answers(p: FaultPipeline) -> bool:
    try:
        describe(p)
    except grpc.RpcError:
        return False
    return True


def describe_or_none(p: FaultPipeline) -> list[memory_pb2.CameraMemory]:
    try:
        return [c for c in describe(p).cameras if c.index_frames > 0]
    except grpc.RpcError:
        return []


@pytest.fixture
def small_memory_volume(tmp_path: Path) -> Iterator[Path]:
    """A 256 MiB tmpfs for the memory."""
    with tmpfs(tmp_path / "memory", 256) as mount:
        yield mount


@pytest.mark.parametrize("pipeline", [WITH_MEMORY], indirect=True)
def test_memory_volume_fills_up(pipeline: FaultPipeline, undisturbed: int, small_memory_volume: Path) -> None:
    pipeline.env["VIGIL_MEMORY__MIN_FREE_BYTES"] = str(64 * 2**20)
    filler = small_memory_volume / "filler"

    def fault(p: FaultPipeline) -> None:
        # Once the memory is writing (a memory that opens under its floor exits 2 instead), another
        # program takes the whole disk, mid-stream.
        p.wait_for(lambda: memory_answers(p), 240, "the memory to open")
        take_all_space(filler)

    outcome = run_with(pipeline, fault, undisturbed)
    check("memory volume full", undisturbed, outcome)
    # The memory refused what did not fit instead of writing into a full disk (SIGBUS), and lives on.
    assert pipeline.procs["memory"].poll() is None
    assert "memory writes stopped" in (pipeline.workdir / "memory.log").read_text()


def test_poison_messages(pipeline: FaultPipeline, undisturbed: int) -> None:
    def fault(p: FaultPipeline) -> None:
        bus = KafkaBus(BusConfig(kind="kafka", bootstrap=p.bootstrap))
        for topic in (p.topics["frames"], p.topics["events"]):
            bus.publish(topic, b"\xff not a protobuf \x00", key=CAMERA)
        bus.flush()
        bus.close()

    outcome = run_with(pipeline, fault, undisturbed)
    check("poison messages", undisturbed, outcome)
    # Each went to its topic's dead-letter topic, with the reason in a header.
    for topic in (pipeline.topics["frames"], pipeline.topics["events"]):
        dead = pipeline.read_topic(topic + ".dlq", 1)
        assert len(dead) == 1 and dead[0].value == b"\xff not a protobuf \x00", topic
