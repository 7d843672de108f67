"""The `vigil` command on real videos and on bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from services.models.structurers.base import validate_event
from tests.fixtures.media import shared
from tests.fixtures.tcp_proxy import free_port

ROOT = Path(__file__).resolve().parents[2]


def vigil(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_run_json_on_accident_clip() -> None:
    video = shared("videos", "static_camera", "accident_cctv_test1.mp4")
    res = vigil("run", "--video", str(video), "--json", "--no-progress")
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    alerts = [r for r in records if r["type"] == "alert"]
    summary = records[-1]
    assert summary["type"] == "summary" and summary["frames"] > 0
    assert summary["alerts"] == len(alerts) == summary["events"]
    assert len({a["event_id"] for a in alerts}) == len(alerts)
    for a in alerts:
        validate_event(a["event"], gamma=0.5)
    for stage in ("decode", "detect", "ingest_encode"):
        assert summary["latency_ms"][stage]["p95_ms"] >= summary["latency_ms"][stage]["p50_ms"] > 0


@pytest.mark.slow
def test_run_whose_memory_disk_is_full_still_alerts(tmp_path: Path) -> None:
    """A memory that cannot open (here: its volume under the free-space floor) costs the memory, not the alerts."""
    video = shared("videos", "static_camera", "accident_cctv_test1.mp4")
    res = subprocess.run(
        [sys.executable, "-m", "services.cli", "run", "--video", str(video), "--memory", str(tmp_path / "m"), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        # A floor no disk can meet: the same state as a full disk, without filling one.
        env={**os.environ, "VIGIL_MEMORY__MIN_FREE_BYTES": str(2**60)},
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["alerts"] == summary["events"] > 0
    assert summary["memory_points"] is None and "min_free_bytes" in summary["memory_error"]
    assert not (tmp_path / "m" / "qdrant").exists()


def test_nonexistent_video_fails_clearly() -> None:
    res = vigil("run", "--video", "/nonexistent.mp4")
    assert res.returncode == 2
    assert "video file not found: /nonexistent.mp4" in res.stderr


def test_not_a_video_fails_clearly(tmp_path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video")
    res = vigil("run", "--video", str(bad))
    assert res.returncode == 2 and "cannot decode" in res.stderr


def test_truncated_mp4_fails_clearly(tmp_path) -> None:
    video = shared("videos", "static_camera", "accident_cctv_test1.mp4")
    cut = tmp_path / "cut.mp4"
    data = video.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    res = vigil("run", "--video", str(cut))
    # This clip keeps its index (moov atom) at the end: cut in half, nothing can be decoded.
    assert res.returncode == 2 and "truncated" in res.stderr


def test_truncated_avi_reads_what_it_can(tmp_path) -> None:
    video = shared("videos", "static_camera", "bgslibrary_video02.avi")
    cut = tmp_path / "cut.avi"
    data = video.read_bytes()
    cut.write_bytes(data[: len(data) // 10])
    res = vigil("run", "--video", str(cut), "--json", "--no-progress", "--fps", "2")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.splitlines()[-1])
    assert summary["ended_early"] and 0 < summary["frames_read"] < 748


def test_stream_that_does_not_answer() -> None:
    """A port that accepts the connection but never speaks RTSP: the stream itself did not answer."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"rtsp://127.0.0.1:{silent.getsockname()[1]}/none"
        res = vigil("run", "--camera", url, "--open-timeout", "2", timeout=60)
    assert res.returncode == 2 and "did not answer within 2s" in res.stderr


def test_stream_whose_port_refuses_says_so() -> None:
    port = free_port()
    res = vigil("run", "--camera", f"rtsp://127.0.0.1:{port}/none", "--open-timeout", "2", timeout=60)
    assert res.returncode == 2 and f"127.0.0.1:{port} refused the connection" in res.stderr
    res = vigil("run", "--camera", "rtsp://cam.invalid/live", "--open-timeout", "2", timeout=60)
    assert res.returncode == 2 and "'cam.invalid' does not resolve" in res.stderr


def test_alerts_without_a_broker_is_an_error_not_silence() -> None:
    """An unreachable broker must not look like "no alerts" (exit 0, nothing printed)."""
    res = vigil("alerts", "--kafka", f"127.0.0.1:{free_port()}", "--connect-timeout", "2", timeout=60)
    assert res.returncode == 3 and res.stdout == ""
    assert "no Kafka broker answered" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([b"\xff\xfe a car?"], "not valid UTF-8 (byte 0xff"),
        ([b"a car", b"--max-frames", b"-5"], "-5 is out of range"),
        ([b"a car", b"--max-frames", b"1e11"], "'1e11' is not a whole number"),
        ([b"a car", b"--seed", b"-1"], "-1 is out of range"),
    ],
)
def test_ask_refuses_unusable_arguments_with_a_message(args: list[bytes], needle: str) -> None:
    """Checked before any memory is opened: argparse's exit 2 and one line, never a traceback."""
    res = subprocess.run(
        [sys.executable.encode(), b"-m", b"services.cli", b"ask", *args],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    err = res.stderr.decode("utf-8", "replace")
    assert res.returncode == 2 and needle in err and "Traceback" not in err


@pytest.mark.slow
def test_run_on_kafka_then_alerts_command(tansu, unique_topic) -> None:
    """`vigil run --kafka` publishes the run's alerts; `vigil alerts` prints them once each."""
    import os

    video = shared("videos", "static_camera", "accident_cctv_test1.mp4")
    alerts_topic = unique_topic("alerts")
    env = {
        **os.environ,
        "VIGIL_TOPICS__FRAMES": unique_topic("frames"),
        "VIGIL_TOPICS__EVENTS": unique_topic("events"),
        "VIGIL_TOPICS__ALERTS": alerts_topic,
        "VIGIL_TOPICS__EVIDENCE": unique_topic("evidence"),
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "run",
            "--video",
            str(video),
            "--kafka",
            tansu.bootstrap,
            "--json",
            "--no-progress",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    run_ids = {r["event_id"] for r in records if r["type"] == "alert"}
    assert run_ids and records[-1]["alerts"] == len(run_ids)

    # The uplink may redeliver after a crash; duplicates of one UUID are printed once.
    from services.common.bus.kafka import KafkaBus
    from services.common.config import BusConfig
    from vigil.alert.v1 import alert_pb2

    bus = KafkaBus(BusConfig(kind="kafka", bootstrap=tansu.bootstrap))
    dup = alert_pb2.Alert()
    received: list[bytes] = []
    reader = bus.consumer([alerts_topic], unique_topic("g"), lambda m: received.append(m.value))
    while not received:
        reader.poll(1.0)
    reader.close()
    dup.ParseFromString(received[0])
    bus.publish(alerts_topic, dup.SerializeToString(), key=dup.event_id)
    bus.flush()
    bus.close()

    res = vigil("alerts", "--kafka", tansu.bootstrap, "--topic", alerts_topic, "--json", "--idle-exit", "8")
    assert res.returncode == 0, res.stderr
    printed = [json.loads(line)["event_id"] for line in res.stdout.splitlines() if line.strip()]
    assert sorted(printed) == sorted(run_ids)


def test_bench_uplink_on_an_events_file(tmp_path) -> None:
    trace = tmp_path / "flat.trace"
    trace.write_text("".join(f"{t} 0.2\n" for t in range(30)))  # 25 kB/s, Pensieve format
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"e{i}",
                    "arrival_s": 0.3 * i,
                    "level": i % 2,
                    "score": 0.3 + 0.6 * (i % 2),
                    "c_json": 190,
                    "c_roi": 2300,
                    "c_box": 20_000,
                }
            )
            + "\n"
            for i in range(6)
        )
    )
    res = vigil(
        "bench", "uplink", "--trace", str(trace), "--scale", "0.5", "--events", str(events), "--horizon-s", "10"
    )
    assert res.returncode == 0, res.stderr
    rows = {r["method"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert {
        "dat",
        "fixed_box",
        "fixed_roi",
        "fixed_json_box",
        "bandwidth_only",
        "priority_only",
        "json_only",
        "optimal",
        "vigil_eventdriven",
    } <= set(rows)
    for r in rows.values():
        assert r["undelivered_alerts"] == 0 and r["bytes_sent"] > 0
    assert rows["optimal"]["w_alarm_s"] <= rows["dat"]["w_alarm_s"] + 1e-9
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "arrival_s": 0}\n')
    res = vigil("bench", "uplink", "--trace", str(trace), "--events", str(bad))
    assert res.returncode != 0 and "line 1" in res.stderr


@pytest.mark.slow
def test_index_finds_the_reference_scene_cuts() -> None:
    """PySceneDetect's test video: hard cuts at frames 30 and 180, a soft one near 394 (MANIFEST)."""
    video = shared("videos", "scene_cuts", "testvideo.mp4")
    res = vigil("index", "--video", str(video), "--json")
    assert res.returncode == 0, res.stderr
    scenes = json.loads(res.stdout)["scenes"]
    starts = [s["start_frame"] for s in scenes]
    assert starts[:3] == [0, 30, 180] and any(abs(s - 394) <= 3 for s in starts)
    for s in scenes:
        assert s["clusters"] and all(s["start_frame"] <= c["index_frame"] <= s["end_frame"] for c in s["clusters"])
