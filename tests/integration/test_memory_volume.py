"""The memory on a volume that fills up, and a memory that another process holds.

* A real small filesystem (tmpfs, mounted by the test; skipped where this process may not mount):
  the memory keeps its floor, evicts its oldest raw frames, refuses what still does not fit,
  never crashes with SIGBUS (run in a child process, so a crash is seen as its exit status), and
  resumes once space returns.
* A memory held by one process: `vigil ask` (a real CLI process) never opens it; it answers
  through the holder's advertised Retrieve, or says who holds it, and the holder's writes go on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.bus import Message
from services.indexing.stream import point_id_for
from services.memory.bootstrap import WRITES_HEALTH, Memory
from services.memory.config import FrameStoreConfig, MemoryConfig
from services.memory.grpc_server import create_server
from services.memory.store import QdrantEdgeStoreConfig
from services.models.embedders.base import AuxMiniLMEmbedderConfig
from tests.fixtures.volumes import take_all_space, tmpfs
from vigil.media.v1 import frame_pb2
from vigil.memory.v1 import memory_pb2

pytestmark = pytest.mark.torch

MiB = 2**20
REPO = Path(__file__).resolve().parents[2]


def config(root: Path, min_free_bytes: int) -> MemoryConfig:
    return MemoryConfig(
        store=QdrantEdgeStoreConfig(path=root / "qdrant"),
        frames=FrameStoreConfig(path=root / "frames"),
        embedder=AuxMiniLMEmbedderConfig(ocr=False),
        min_free_bytes=min_free_bytes,
    )


def noise_jpeg(seed: int, size: tuple[int, int] = (360, 640)) -> bytes:
    """A JPEG that does not compress (noise): ~200-400 kB."""
    img = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    return bytes(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1])


def frame(camera: str, t: float, seq: int, jpeg: bytes) -> Message:
    f = frame_pb2.Frame(camera_id=camera, seq=seq, pts_s=t, capture_time_ns=seq, jpeg=jpeg)
    return Message("frames", 0, seq, camera.encode(), f.SerializeToString())


def entry(memory: Memory, camera: str, start: float, text: str, jpeg: bytes) -> Message:
    """A closed cluster as the index topic delivers it, with the memory's own embedder's vectors."""
    embedder = memory.embedder
    tv = embedder.embed_texts([text])[0]  # type: ignore[attr-defined]
    iv = embedder.embed_pixels([cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)])[0]  # type: ignore[attr-defined]
    members = [memory_pb2.FrameRef(time_s=start + i * 0.5, capture_time_ns=i, seq=i) for i in range(3)]
    e = memory_pb2.IndexEntry(
        point_id=point_id_for(camera, start),
        camera_id=camera,
        start_s=start,
        end_s=start + 1.0,
        index_frame=members[1],
        members=members,
        vectors=[
            memory_pb2.NamedVector(name="text", values=tv.tolist()),
            memory_pb2.NamedVector(name="image", values=iv.tolist()),
        ],
        aux_text=text,
        embedder=embedder.name,
        index_jpeg=jpeg,
    )
    return Message("index", 0, 0, camera.encode(), e.SerializeToString())


def fill_volume(root: str, floor_mib: int) -> None:
    """Child-process body: write into a small volume until it would be full, twice over; print what happened."""
    mount = Path(root)
    memory = Memory(config(mount / "memory", floor_mib * MiB))
    try:
        jpegs = [noise_jpeg(i) for i in range(8)]
        frames = 0
        # Two hours of one camera at one frame a second would be ~1 GB; the volume holds 64 MiB.
        for i in range(400):
            hour_block = i // 40  # ten raw buckets: 40 frames an "hour"
            memory.writer.on_frame(frame("cam", hour_block * 3600.0 + i, i, jpegs[i % 8]))
            frames += 1
        evicted = memory.frames.expired_buckets
        # Another program fills the disk. The floor's first resort empties the raw layer to make room (the
        # frame after it is stored); when the disk is full again, nothing is left to evict.
        filler = mount / "filler"
        take_all_space(filler)
        memory.writer.on_frame(frame("cam", 80_000.0, 999, jpegs[0]))
        take_all_space(filler)
        refused_before = memory.writer.frames_refused
        for i in range(20):
            memory.writer.on_frame(frame("cam", 90_000.0 + i, 1000 + i, jpegs[0]))
            memory.writer.on_index_entry(entry(memory, "cam", 90_000.0 + i, "a person", jpegs[1]))
        refused = {
            "frames": memory.writer.frames_refused - refused_before,
            "clusters": memory.writer.entries_refused,
            "degraded": memory.floor.degraded,
        }
        # Space comes back: writes resume by themselves.
        filler.unlink()
        memory.writer.on_index_entry(entry(memory, "cam", 95_000.0, "a car", jpegs[2]))
        memory.writer.on_frame(frame("cam", 95_000.0, 2000, jpegs[2]))
        print(
            json.dumps(
                {
                    "frames_written": frames,
                    "evicted_buckets": evicted,
                    "refused": refused,
                    "resumed": not memory.floor.degraded,
                    "points": memory.count(),
                    "frames_stored": memory.writer.frames_stored,
                }
            ),
            flush=True,
        )
    finally:
        memory.close()


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "vol", 64) as mount:
        yield mount


@pytest.mark.slow
def test_a_filling_volume_evicts_then_refuses_then_resumes_and_never_crashes(small_volume: Path) -> None:
    code = f"from tests.integration.test_memory_volume import fill_volume; fill_volume({str(small_volume)!r}, 16)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600, env=os.environ.copy()
    )
    # A SIGBUS from a memory-mapped write into the full disk shows here as -7.
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-3000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # 400 frames of ~300 kB are ~120 MB into 64 MiB: only eviction of the oldest raw hours let them all in.
    assert result["frames_stored"] >= 401 and result["evicted_buckets"] > 0
    assert result["refused"] == {"frames": 20, "clusters": 20, "degraded": True}
    assert result["resumed"] and result["points"] == 1
    assert "memory writes stopped" in done.stderr and "memory writes resumed" in done.stderr


def vigil_ask(memory_root: Path, question: str) -> subprocess.CompletedProcess[str]:
    """`vigil ask` as a user runs it, on the memory at `memory_root`."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "ask", question, "--memory", str(memory_root), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_ask_on_a_held_memory_goes_through_the_holder_and_never_disturbs_it(tmp_path: Path) -> None:
    root = tmp_path / "memory"
    memory = Memory(config(root, 0))
    try:
        jpeg = noise_jpeg(0, (72, 128))
        for k, text in enumerate(["a person walking", "a red car parked", "a dog"]):
            memory.writer.on_frame(frame("cam", 10.0 * k, k, jpeg))
            memory.writer.on_index_entry(entry(memory, "cam", 10.0 * k, text, noise_jpeg(k + 1, (72, 128))))

        # Held, serving nothing yet: the ask says who holds it and exits 3; it opened nothing.
        done = vigil_ask(root, "a car")
        assert done.returncode == 3, done.stderr
        assert f"in use by pid {os.getpid()}" in done.stderr

        # The holder serves Retrieve on loopback and says so in its lock file: the ask answers through it.
        server, port, health = create_server("127.0.0.1:0", memory)
        server.start()
        memory.watch_health(health)
        memory.advertise(f"127.0.0.1:{port}")
        try:
            done = vigil_ask(root, "a red car")
            assert done.returncode == 0, done.stderr
            answer = json.loads(done.stdout)
            assert answer["keyframes"] and {k["camera_id"] for k in answer["keyframes"]} == {"cam"}
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                check = health_pb2_grpc.HealthStub(channel).Check
                status = check(health_pb2.HealthCheckRequest(service=WRITES_HEALTH), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        finally:
            server.stop(None)

        # The holder's writes go on: the files a second opener used to break are untouched.
        memory.writer.on_index_entry(entry(memory, "cam", 40.0, "a bicycle", jpeg))
        memory.writer.on_frame(frame("cam", 40.0, 9, jpeg))
        assert memory.count() == 4 and memory.writer.entries_stored == 4
    finally:
        memory.close()
    # Once released, the memory opens again with everything in it.
    reopened = Memory(config(root, 0))
    try:
        assert reopened.count() == 4
    finally:
        reopened.close()
