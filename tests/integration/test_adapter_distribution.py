"""LoRA adapters from the cloud to a running edge gating, through Tansu (DAT section 3.1).

Real parts: the Tansu broker, the adapter registry and gating built by their own
bootstraps with their gRPC servers on port 0, the real accident and COCO detectors on
real CCTV frames, and the tiny random Qwen2.5-VL with real PEFT adapters (its events
mean nothing; what is tested is where each event's adapter came from). `vigil adapter`
publishes, reads the status and rolls back, as a person would.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.common.bus import Message
from services.common.bus.kafka import KafkaBus
from services.common.config import TopicsConfig
from services.common.runtime import Stage
from tests.fixtures.media import shared
from vigil.adapter.v1 import adapter_pb2
from vigil.event.v1 import event_pb2
from vigil.media.v1 import frame_pb2

pytestmark = [pytest.mark.slow, pytest.mark.torch]

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from scripts.make_tiny_qwen_vl import make_tiny_lora, make_tiny_qwen_vl  # noqa: E402
from services.adapters.bootstrap import build as build_registry  # noqa: E402
from services.adapters.config import AdaptersConfig, AdaptersSettings  # noqa: E402
from services.cli.main import build_parser  # noqa: E402
from services.gating.bootstrap import build as build_gating  # noqa: E402
from services.gating.config import AdapterUpdatesConfig, GatingConfig, GatingSettings  # noqa: E402
from services.models.adapter_bundle import pack, sha256_hex  # noqa: E402
from services.models.structurers.config import QwenVLConfig  # noqa: E402

CCTV = shared("images", "cctv_accidents")


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny base, two adapters trained on it, and two bad ones: another base, unreadable weights."""
    root = tmp_path_factory.mktemp("adapters")
    base = make_tiny_qwen_vl(root / "tiny-qwen2.5-vl", seed=0)
    out = {
        "base": base,
        "v1": make_tiny_lora(base, root / "v1", seed=0),
        "v2": make_tiny_lora(base, root / "v2", seed=3),
    }
    other = shutil.copytree(out["v1"], root / "other-base")
    config = json.loads((other / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "/models/Qwen2.5-VL-7B-Instruct"
    (other / "adapter_config.json").write_text(json.dumps(config))
    broken = shutil.copytree(out["v1"], root / "broken-weights")
    (broken / "adapter_model.safetensors").write_bytes(b"\x20\x00\x00\x00\x00\x00\x00\x00not a safetensors header")
    return {**out, "other": other, "broken": broken}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    # The tiny model is dominated by thread hand-offs: one thread is much faster on 2 shared cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def vigil(argv: list[str]) -> int:
    """`vigil ARGV` in this process, without main()'s logging set-up (which would replace pytest's capture)."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


def accident_frames(n: int) -> list[bytes]:
    """JPEGs of `n` labelled accident frames (several clips), as ingest would send them."""
    if not (CCTV / "frames.csv").is_file():
        pytest.skip(f"shared data not found at {CCTV}")
    with (CCTV / "frames.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] == "accident" and r["boxes"]]
    picked = rows[:: max(1, len(rows) // (4 * n))][: 4 * n]
    out = []
    for r in picked:
        ok, jpeg = cv2.imencode(".jpg", cv2.imread(str(CCTV / r["file"])))
        assert ok
        out.append(jpeg.tobytes())
    return out


class Events:
    """Every event on the events topic, collected by a consumer of its own."""

    def __init__(self, bus: KafkaBus, topic: str, group: str, stop: threading.Event) -> None:
        self.events: list[event_pb2.Event] = []
        self._lock = threading.Lock()
        consumer = bus.consumer([topic], group, self._on)
        self._thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
        self._thread.start()

    def _on(self, msg: Message) -> None:
        with self._lock:
            self.events.append(event_pb2.Event.FromString(msg.value))

    def wait_for(self, n: int, timeout_s: float = 180.0) -> list[event_pb2.Event]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.events) >= n:
                    return list(self.events)
            time.sleep(0.2)
        raise AssertionError(f"{len(self.events)} of {n} events after {timeout_s}s")


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def latest(events: list[event_pb2.Event], n: int) -> list[event_pb2.Event]:
    """The last `n` events gating wrote."""
    return sorted(events, key=lambda e: e.created_time_ns)[-n:]


def status(gating: str, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    capsys.readouterr()
    assert vigil(["adapter", "status", "--gating", gating, "--json"]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_publish_swap_mid_stream_refuse_bad_bundles_and_roll_back(
    tansu, kafka_bus_config, unique_topic, adapters, tmp_path, caplog, capsys
) -> None:
    caplog.set_level(logging.INFO, logger="services.gating.adapters")
    topics = TopicsConfig(
        frames=unique_topic("frames"), events=unique_topic("events"), adapters=unique_topic("adapters")
    )
    bus = KafkaBus(kafka_bus_config())
    # Topics exist before any group joins them (a group on a missing topic can wait out a metadata refresh).
    bus.create_topics([topics.frames, topics.events, topics.adapters, topics.dead_letter(topics.adapters)])
    stop = threading.Event()
    stages: list[Stage] = []
    try:
        registry = build_registry(
            AdaptersSettings(
                bus=kafka_bus_config(),
                topics=topics,
                adapters=AdaptersConfig(dir=tmp_path / "cloud", public_address="registry.invalid:1"),
                grpc_address="127.0.0.1:0",
            ),
            bus,
        )
        registry.start(stop)
        stages.append(registry)
        assert registry.endpoint is not None
        registry_address = f"127.0.0.1:{registry.endpoint.port}"

        gating = build_gating(
            GatingSettings(
                bus=kafka_bus_config(),
                topics=topics,
                gating=GatingConfig(
                    structurer=QwenVLConfig(checkpoint=adapters["base"]),
                    # Every gated frame goes to the VLM (none is written from the priors alone).
                    tau_high=1.0,
                    adapters=AdapterUpdatesConfig(
                        dir=tmp_path / "edge", registry=registry_address, consumer_group=unique_topic("g-adapters")
                    ),
                    consumer_group=unique_topic("g-frames"),
                ),
                grpc_address="127.0.0.1:0",
            ),
            bus,
        )
        # Frames the real detector gates, each from its own camera so each is its own incident.
        images = []
        for jpeg in accident_frames(12):
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if gating.gater.detect_and_gate(image)[1].gated:
                images.append(jpeg)
        assert len(images) >= 8, f"only {len(images)} frames gate"
        gating.start(stop)
        stages.append(gating)
        assert gating.endpoint is not None
        control = f"127.0.0.1:{gating.endpoint.port}"
        events = Events(bus, topics.events, unique_topic("g-events"), stop)
        sent = 0

        def send(n: int) -> None:
            nonlocal sent
            for i in range(n):
                jpeg = images[(sent + i) % len(images)]
                frame = frame_pb2.Frame(
                    camera_id=f"cam-{sent + i}", seq=0, pts_s=0.0, capture_time_ns=time.time_ns(), jpeg=jpeg
                )
                bus.publish(topics.frames, frame.SerializeToString(), key=frame.camera_id)
            bus.flush()
            sent += n

        assert status(control, capsys)["structurer"] == "qwen2.5-vl"
        assert "live" not in status(control, capsys)  # proto3 JSON leaves the empty live version out
        assert vigil(["adapter", "rollback", "--gating", control]) == 2
        assert "nothing to roll back to" in capsys.readouterr().err
        assert vigil(["adapter", "publish", str(tmp_path), "--version", "x", "--registry", registry_address]) == 2
        assert "not a PEFT adapter" in capsys.readouterr().err

        # 1. Publish v1 while frames stream: the swap lands between two events, nothing restarts.
        send(10)
        events.wait_for(2)
        capsys.readouterr()
        assert (
            vigil(["adapter", "publish", str(adapters["v1"]), "--version", "v1", "--registry", registry_address]) == 0
        )
        assert "published v1" in capsys.readouterr().out
        wait_until(lambda: status(control, capsys).get("live") == "v1", "v1 to go live")
        send(4)
        got = events.wait_for(sent)
        # In the order gating wrote them (frames spread over partitions, so not in camera order).
        order = [e.producer.adapter for e in sorted(got, key=lambda e: e.created_time_ns)]
        assert len(got) == sent == 14 and len({e.camera_id for e in got}) == 14, "one event per gated frame"
        assert order[:2] == ["", ""] and order[-4:] == ["v1"] * 4
        assert order == sorted(order, key=lambda v: v != ""), f"the swap happened once, between events: {order}"
        assert all(e.producer.random_init for e in got)
        assert REGISTRY.get_sample_value("vigil_gating_adapter_live", {"version": "v1"}) == 1.0

        # 2. Bad bundles: refused with a log line each, v1 stays live.
        for path, version in ((adapters["other"], "other-base"), (adapters["broken"], "broken")):
            assert vigil(["adapter", "publish", str(path), "--version", version, "--registry", registry_address]) == 0
        # Bytes that rotted in the store after the manifest was written: the edge's checksum catches it.
        good = pack(adapters["v2"])
        rotted = good[:100] + bytes([good[100] ^ 0xFF]) + good[101:]
        (tmp_path / "cloud" / f"{sha256_hex(good)}.bundle").write_bytes(rotted)
        manifest = adapter_pb2.AdapterManifest(
            version="rotted", base_model=adapters["base"].name, sha256=sha256_hex(good), size_bytes=len(good)
        )
        bus.publish(topics.adapters, manifest.SerializeToString(), key=manifest.base_model)
        bus.flush()
        wait_until(lambda: caplog.text.count("refused adapter bundle") >= 3, "three refusals")
        for version, reason in (
            ("other-base", "announced for 'Qwen2.5-VL-7B-Instruct'"),
            ("broken", "unreadable"),
            ("rotted", "does not match the manifest"),
        ):
            assert any(
                f"refused adapter bundle {version!r}" in r.message
                and reason in r.message
                and "still running adapter v1" in r.message
                for r in caplog.records
            ), version
        assert status(control, capsys)["live"] == "v1"
        send(2)
        assert [e.producer.adapter for e in latest(events.wait_for(sent), 2)] == ["v1", "v1"]

        # 3. v2, then `vigil adapter rollback`: back to v1 between events.
        (tmp_path / "cloud" / f"{sha256_hex(good)}.bundle").unlink()
        assert (
            vigil(["adapter", "publish", str(adapters["v2"]), "--version", "v2", "--registry", registry_address]) == 0
        )
        wait_until(lambda: status(control, capsys).get("live") == "v2", "v2 to go live")
        send(2)
        assert [e.producer.adapter for e in latest(events.wait_for(sent), 2)] == ["v2", "v2"]
        capsys.readouterr()
        assert vigil(["adapter", "rollback", "--gating", control]) == 0
        assert "live v1, previous (base model)" in capsys.readouterr().out
        send(2)
        assert [e.producer.adapter for e in latest(events.wait_for(sent), 2)] == ["v1", "v1"]
        assert REGISTRY.get_sample_value("vigil_gating_adapter_live", {"version": "v1"}) == 1.0
        assert REGISTRY.get_sample_value("vigil_gating_adapter_live", {"version": "v2"}) == 0.0
        capsys.readouterr()
        assert vigil(["adapter", "list", "--registry", registry_address]) == 0
        assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == [
            "v1",
            "other-base",
            "broken",
            "v2",
        ]
    finally:
        stop.set()
        for stage in reversed(stages):
            stage.close(grace_s=1.0)
        bus.close()
