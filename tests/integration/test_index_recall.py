"""Sparse indexing loses nothing that matters: with content-driven splits (IndexingConfig's default), questions
about what happened on a fixed camera still land on the right time.

Each source is indexed by the streaming CameraIndexer into a real memory (Qdrant Edge, aux-minilm embedder,
the real detectors) and asked through the memory's Retriever. Where the event is in view comes from outside
the index: for the truck, the COCO detector run over every sampled frame (the truck is in view where it sees
one); for the crash, the human frame labels of the cctv_accidents set (`frames.csv`, `accident` = the
collision or its aftermath in view), on a clip the accident detector never trained on.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest

from services.common.bus import Message
from services.common.memory_api import Mode
from services.indexing.bootstrap import build_cluster_embedder
from services.indexing.config import IndexingConfig
from services.indexing.stream import CameraIndexer, ClosedCluster, PendingFrame
from services.ingest.source import open_source, resolve_fps
from services.memory.bootstrap import Memory
from services.memory.config import FrameStoreConfig, MemoryConfig
from services.memory.retriever import RetrieveQuery
from services.memory.store import QdrantEdgeStoreConfig
from services.models.detectors.base import OnnxDetectorConfig, build_detector
from tests.fixtures.media import shared

pytestmark = [pytest.mark.slow, pytest.mark.torch]


@dataclass
class Indexed:
    """A source indexed into a memory, with what the ground-truth detector saw in each sampled frame."""

    memory: Memory
    frames: int
    entries: int
    seen: dict[float, set[str]]


def index_into_memory(source: Path, config: IndexingConfig, tmp_path: Path) -> Indexed:
    """Index `source` at its default sampling rate (`vigil run`'s) into a fresh memory under tmp_path."""
    assert config.detector is not None
    detector = build_detector(config.detector)
    stage = build_cluster_embedder(config, detector=detector)
    indexer = CameraIndexer.from_config("cam", config, detector)
    src = open_source(str(source), fps=resolve_fps(str(source), None))
    closed: list[ClosedCluster] = []
    seen: dict[float, set[str]] = {}
    frames = 0
    try:
        for f in src.frames():
            ok, jpeg = cv2.imencode(".jpg", f.image)
            assert ok
            closed += indexer.push(PendingFrame(f.pts_s, 0, f.index, jpeg.tobytes()), f.image)
            seen[f.pts_s] = {d.label for d in detector.detect(f.image) if d.confidence >= config.aux_min_confidence}
            frames += 1
    finally:
        src.close()
    closed += indexer.flush()
    entries = stage.entries(closed)
    memory = Memory(
        MemoryConfig(
            store=QdrantEdgeStoreConfig(path=tmp_path / "qdrant"), frames=FrameStoreConfig(path=tmp_path / "frames")
        ),
        embedder=stage.embedder,
    )
    for i, entry in enumerate(entries):
        memory.writer.on_index_entry(Message("index", 0, i, None, entry.SerializeToString()))
    return Indexed(memory, frames, len(entries), seen)


def best_time(memory: Memory, question: str) -> tuple[float, str]:
    """The most similar index frame's time and auxiliary text (greedy top-1)."""
    result = memory.retriever.retrieve(RetrieveQuery(question, mode=Mode.TOP_K, max_frames=1, with_images=False))
    (frame,) = result.frames
    return frame.time_s, frame.hit.payload.aux_text


def test_the_truck_on_a_busy_fixed_highway_camera(tmp_path: Path) -> None:
    video = shared("videos", "static_camera", "bgslibrary_video02.avi")
    indexed = index_into_memory(video, IndexingConfig(), tmp_path)
    try:
        # Sparse: far fewer index frames than the pixel rule's 8 in these 150 frames.
        assert indexed.entries / indexed.frames <= 0.02, (indexed.entries, indexed.frames)
        truck_times = [t for t, labels in indexed.seen.items() if "truck" in labels]
        assert truck_times, "the detector sees no truck in this video at all"
        t, aux = best_time(indexed.memory, "a truck")
        assert "truck" in aux, aux
        # Within one sampled frame (0.2 s at 5 fps) of a frame where the truck is in view.
        assert min(abs(t - x) for x in truck_times) <= 0.2 + 1e-6, (t, truck_times)
    finally:
        indexed.memory.close()


def test_the_crash_on_a_clip_the_accident_detector_never_saw(tmp_path: Path) -> None:
    # test14 is one of the accident detector's held-out test clips (models/vigil-accident-yolov8n.md).
    clip = shared("images", "cctv_accidents", "frames", "test14")
    labels = {
        Path(row["file"]).name: row["label"]
        for row in csv.DictReader(shared("images", "cctv_accidents", "frames.csv").open())
        if row["clip"] == "test14"
    }
    # Indexing described by the accident detector (the classes a crash question needs), its class as a word.
    config = IndexingConfig(detector=OnnxDetectorConfig(model="accident"), class_phrases={"accident": "crash"})
    indexed = index_into_memory(clip, config, tmp_path)
    try:
        t, aux = best_time(indexed.memory, "a crash")
        # An image sequence plays image i (in name order) at i / fps.
        names = sorted(labels)
        fps = resolve_fps(str(clip), None)
        assert fps is not None
        name = names[round(t * fps)]
        assert labels[name] == "accident", (t, name, aux)
    finally:
        indexed.memory.close()
