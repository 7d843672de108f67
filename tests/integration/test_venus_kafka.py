"""Indexing from the frames topic to the memory through a real Kafka-protocol broker (Tansu).

ingest-shaped Frame records -> indexing (manual acks) -> index topic -> memory (frames + index
consumers) -> Qdrant Edge and the frame store. Checks that every good frame ends up in a cluster,
a corrupt one is skipped and counted, a failing embedder is retried without losing or repeating
frames, and a crash of indexing with a cluster still open loses nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.common.bus.kafka import KafkaBus
from services.common.config import BusConfig
from services.indexing.config import IndexingConfig
from services.indexing.consumer import IndexingHandler
from services.indexing.stream import ClusterEmbedder
from services.memory.bootstrap import Memory
from services.memory.config import FrameStoreConfig, MemoryConfig
from services.memory.retriever import RetrieveQuery
from services.memory.store import QdrantEdgeStoreConfig
from services.models.embedders.base import AuxMiniLMEmbedderConfig, Embedder, FrameEmbedding, build_embedder
from vigil.media.v1 import frame_pb2

pytestmark = [pytest.mark.torch, pytest.mark.slow]

COLOURS = [(200, 40, 40)] * 8 + [(40, 200, 40)] * 8 + [(40, 40, 200)] * 8


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return build_embedder(AuxMiniLMEmbedderConfig(ocr=False))


class FlakyEmbedder(Embedder):
    """The real embedder, failing its first `failures` frame batches (Triton or a GPU hiccup)."""

    def __init__(self, inner: Embedder, failures: int) -> None:
        self.inner, self.failures, self.calls = inner, failures, 0

    name = property(lambda self: self.inner.name)
    vector_specs = property(lambda self: self.inner.vector_specs)
    limitations = property(lambda self: self.inner.limitations)

    def embed_frames(self, images: Sequence[np.ndarray], aux_texts: Sequence[str]) -> list[FrameEmbedding]:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("embedder backend unavailable (injected)")
        return self.inner.embed_frames(images, aux_texts)

    def embed_query(self, text: str) -> dict[str, np.ndarray]:
        return self.inner.embed_query(text)


def frame(seq: int, camera: str = "cam", corrupt: bool = False) -> bytes:
    img = np.zeros((90, 160, 3), np.uint8)
    img[:] = COLOURS[seq % len(COLOURS)]
    cv2.putText(img, str(seq), (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    jpeg = b"\xff\xd8 not a jpeg" if corrupt else cv2.imencode(".jpg", img)[1].tobytes()
    return frame_pb2.Frame(
        camera_id=camera, seq=seq, pts_s=seq / 5.0, capture_time_ns=seq, jpeg=jpeg
    ).SerializeToString()


class Stack:
    """indexing + memory consumers on one Kafka bus, each on its own thread."""

    def __init__(self, bus_config: BusConfig, topics: dict[str, str], memory: Memory, embedder: Embedder) -> None:
        self.bus = KafkaBus(bus_config, client_id="test-venus")
        self.memory = memory
        cfg = IndexingConfig(detector=None, idle_flush_s=1.0)
        self.handler = IndexingHandler(ClusterEmbedder(embedder, None, {}, 0.3), self.bus, topics["index"], cfg)
        self.index_consumer = self.bus.consumer(
            [topics["frames"]],
            topics["group"] + "-idx",
            self.handler,
            manual_ack=True,
            dead_letter_topic=topics["frames"] + ".dlq",
        )
        self.handler.ack = self.index_consumer.ack
        self.others = [
            self.bus.consumer([topics["frames"]], topics["group"] + "-memf", memory.writer.on_frame),
            self.bus.consumer([topics["index"]], topics["group"] + "-memi", memory.writer.on_index_entry),
        ]
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=c.run, args=(self.stop,), daemon=True) for c in [self.index_consumer, *self.others]
        ]
        self.threads.append(threading.Thread(target=self.handler.run_idle_flusher, args=(self.stop, 0.5), daemon=True))
        for t in self.threads:
            t.start()

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=15)
        for c in [self.index_consumer, *self.others]:
            c.close()
        self.bus.close()


def wait_for(cond: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def indexed_seqs(memory: Memory) -> list[int]:
    """Every member frame of every cluster in the memory (a frame in two clusters appears twice)."""
    probe = np.ones(memory.embedder.vector_specs["text"], np.float32)
    hits = memory.store.scores_in_range("text", probe)
    out: list[int] = []
    for h in hits:
        rec = memory.frames.get_cluster(h.payload.camera_id, h.point_id)
        assert rec is not None
        out += [m.seq for m in rec.members]
    return sorted(out)


@pytest.fixture
def names(unique_topic: Callable[[str], str]) -> dict[str, str]:
    return {"frames": unique_topic("frames"), "index": unique_topic("index"), "group": unique_topic("g")}


@pytest.fixture
def memory(tmp_path: Path, embedder: Embedder) -> Iterator[Memory]:
    mem = Memory(
        MemoryConfig(
            store=QdrantEdgeStoreConfig(path=tmp_path / "q"),
            frames=FrameStoreConfig(path=tmp_path / "f"),
            embedder=AuxMiniLMEmbedderConfig(ocr=False),
        ),
        embedder=embedder,
    )
    yield mem
    mem.close()


def publish(bus_config: BusConfig, topic: str, seqs: Sequence[int], corrupt: Sequence[int] = ()) -> None:
    bus = KafkaBus(bus_config, client_id="test-ingest")
    for s in seqs:
        bus.publish(topic, frame(s, corrupt=s in corrupt), key="cam")
    bus.flush()
    bus.close()


def test_frames_topic_to_memory_with_a_corrupt_frame_and_a_flaky_embedder(
    kafka_bus_config: Callable[..., BusConfig], names: dict[str, str], memory: Memory, embedder: Embedder
) -> None:
    flaky = FlakyEmbedder(embedder, failures=2)
    stack = Stack(kafka_bus_config(), names, memory, flaky)
    try:
        publish(kafka_bus_config(), names["frames"], range(24), corrupt=[5])
        # The idle flusher closes the last cluster once the stream goes quiet.
        wait_for(lambda: stack.handler.frames + stack.handler.corrupt == 24 and stack.handler.indexers_idle())
        wait_for(lambda: memory.writer.entries_stored >= stack.handler.entries_published > 0)
        wait_for(lambda: memory.writer.frames_stored == 24)
    finally:
        stack.close()
    assert flaky.calls > 2  # it failed, was retried, then worked
    assert stack.handler.corrupt == 1
    assert indexed_seqs(memory) == [s for s in range(24) if s != 5]  # nothing lost, nothing twice
    assert memory.count() == stack.handler.entries_published >= 3  # three colours, at least three clusters
    res = memory.retriever.retrieve(RetrieveQuery("anything", seed=1))
    assert res.frames and all(f.jpeg for f in res.frames)


def test_indexing_crash_with_an_open_cluster_loses_no_frame(
    kafka_bus_config: Callable[..., BusConfig], names: dict[str, str], memory: Memory, embedder: Embedder
) -> None:
    first = Stack(kafka_bus_config(), names, memory, embedder)
    first.handler.config = first.handler.config.model_copy(update={"idle_flush_s": 3600.0})
    try:
        publish(kafka_bus_config(), names["frames"], range(20))
        wait_for(lambda: first.handler.frames == 20)
        wait_for(lambda: memory.writer.entries_stored >= first.handler.entries_published > 0)
    finally:
        # A crash: the open cluster's frames were never acknowledged, so their offsets are not committed.
        first.close()
    before = indexed_seqs(memory)
    assert before and before[-1] < 19
    second = Stack(kafka_bus_config(), names, memory, embedder)
    try:
        wait_for(lambda: second.handler.frames > 0 and second.handler.indexers_idle())
        wait_for(
            lambda: memory.writer.entries_stored >= first.handler.entries_published + second.handler.entries_published
        )
    finally:
        second.close()
    after = indexed_seqs(memory)
    assert set(after) == set(range(20))
    # The restart re-reads from the committed offset: the open cluster's frames, not the indexed ones.
    assert second.handler.frames == 20 - len(before)
    assert len(after) == 20
