"""Streaming indexing: CameraIndexer's clusters cover every frame once, contiguously, and close when they should."""

from __future__ import annotations

import numpy as np

from services.indexing.clustering import ContentSplit
from services.indexing.scenes import SceneParams
from services.indexing.stream import CameraIndexer, ClosedCluster, PendingFrame, describe_detections, point_id_for
from services.models.detections import Box, Detection
from services.models.detectors.base import Detector


def solid(bgr: tuple[int, int, int], noise: int = 0, seed: int = 0) -> np.ndarray:
    img = np.zeros((72, 128, 3), np.uint8)
    img[:] = bgr
    if noise:
        rng = np.random.default_rng(seed)
        img = np.clip(img.astype(int) + rng.integers(-noise, noise + 1, img.shape), 0, 255).astype(np.uint8)
    return img


def run(indexer: CameraIndexer, images: list[np.ndarray], fps: float = 5.0, t0: float = 0.0) -> list[ClosedCluster]:
    closed: list[ClosedCluster] = []
    for i, img in enumerate(images):
        closed += indexer.push(PendingFrame(t0 + i / fps, 1_000 + i, i, b"jpeg%d" % i, handle=("msg", i)), img)
    return closed


def test_every_frame_lands_in_exactly_one_contiguous_cluster() -> None:
    colours = [(200, 30, 30)] * 6 + [(30, 200, 30)] * 5 + [(30, 30, 200)] * 7
    images = [solid(c, noise=3, seed=i) for i, c in enumerate(colours)]
    indexer = CameraIndexer("cam", SceneParams(min_scene_s=0.0), cluster_threshold=0.08)
    closed = run(indexer, images)
    closed += indexer.flush()
    seqs = [m.seq for cc in closed for m in cc.members]
    assert seqs == list(range(len(images)))  # all frames, once, in order: clusters are contiguous
    assert [h[1] for cc in closed for h in cc.handles] == seqs
    for cc in closed:
        assert cc.index_member in cc.members
    # Three colours, three scenes, each at least one cluster.
    assert len({cc.cluster.scene_id for cc in closed}) == 3
    assert indexer.open_frames == 0
    assert indexer.flush() == []


def test_a_cluster_closes_only_when_the_next_starts_or_on_flush() -> None:
    indexer = CameraIndexer("cam", SceneParams(), cluster_threshold=0.08)
    assert run(indexer, [solid((100, 100, 100))] * 5) == []
    assert indexer.open_frames == 5
    (cc,) = indexer.flush()
    assert len(cc.members) == 5


def test_time_going_back_closes_the_open_cluster() -> None:
    indexer = CameraIndexer("cam", SceneParams(), cluster_threshold=0.08)
    run(indexer, [solid((100, 100, 100))] * 4, t0=10.0)
    closed = run(indexer, [solid((100, 100, 100))] * 2, t0=0.0)
    assert len(closed) == 1 and [m.time_s for m in closed[0].members] == [10.0, 10.2, 10.4, 10.6]
    (tail,) = indexer.flush()
    assert tail.cluster.scene_id > closed[0].cluster.scene_id


def test_forced_scene_split_bounds_a_static_camera() -> None:
    indexer = CameraIndexer("cam", SceneParams(max_scene_s=2.0), cluster_threshold=0.08)
    closed = run(indexer, [solid((90, 90, 90))] * 25)  # 5 s at 5 fps
    assert len(closed) >= 2
    assert all(cc.members[-1].time_s - cc.members[0].time_s <= 2.0 + 1e-9 for cc in closed)


def test_point_ids_are_deterministic_per_camera_and_start() -> None:
    assert point_id_for("cam", 1.0) == point_id_for("cam", 1.0004)
    assert point_id_for("cam", 1.0) != point_id_for("cam", 1.2)
    assert point_id_for("a", 1.0) != point_id_for("b", 1.0)


def test_describe_detections_counts_by_phrase() -> None:
    phrases = {"Normal": "person", "Fall": "person fallen on the ground"}
    assert describe_detections(["Normal", "Fall", "Normal"], phrases) == "2 person, 1 person fallen on the ground"
    assert describe_detections(["car"], phrases) == "1 car"
    assert describe_detections([], phrases) == ""


class TruckAfter(Detector):
    """Three cars in every frame; a truck too in frames whose top-left pixel is dark (the truck frames below)."""

    def __init__(self) -> None:
        self._name = "scripted"
        self._names = {0: "car", 1: "truck"}
        self.calls = 0

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        self.calls += 1
        cars = [Detection(Box(0, 0, 4, 4), 0, "car", 0.9) for _ in range(3)]
        # Below the confidence floor: never counted.
        noise = [Detection(Box(0, 0, 4, 4), 1, "truck", 0.1)]
        truck = [Detection(Box(0, 0, 4, 4), 1, "truck", 0.8)] if image_bgr[0, 0, 0] < 50 else []
        return cars + truck + noise


def moving(i: int, truck: bool) -> np.ndarray:
    img = solid((120, 120, 120))
    x = (i * 29) % 100
    img[20:50, x : x + 25] = 30  # a car somewhere new in every frame
    if truck:
        img[0:4, 0:4] = 10
    return img


def test_content_split_on_a_fixed_camera_follows_the_detector_not_the_pixels() -> None:
    det = TruckAfter()
    pixel = CameraIndexer("cam", SceneParams(), cluster_threshold=0.08)
    content = CameraIndexer("cam", SceneParams(), 0.08, content=ContentSplit(), detector=det)
    images = [moving(i, truck=i >= 30) for i in range(60)]  # 12 s at 5 fps, the truck from 6 s
    by_pixels = run(pixel, images) + pixel.flush()
    by_content = run(content, images) + content.flush()
    assert len(by_pixels) > 10
    assert [(cc.members[0].seq, cc.cluster.signature) for cc in by_content] == [
        (0, {"car": 3}),
        (by_content[1].members[0].seq, {"car": 3, "truck": 1}),
    ]
    # The split follows the truck after the 3 looks (one per second) that confirm it.
    assert 30 < by_content[1].members[0].seq <= 30 + 3 * 5
    assert det.calls == content.detector_runs <= 13  # at most one look per second of stream time, plus the first
