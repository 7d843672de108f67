"""Streaming indexing (Venus IV-B + IV-C1): frames in, one IndexEntry per closed cluster out.

Per camera, every sampled frame goes through the scene segmenter and the incremental
clusterer (both on a small downscaled copy). With a content split and a detector, a
frame that moved past the clustering threshold only starts a new cluster when the
detector's per-class counts changed (or the view drifted far): see clustering.py.
A cluster is closed when the next cluster starts, at a scene cut, when the camera's
time axis jumps back (a file replayed, a stream restarted) or when the camera goes
quiet (`flush`). A closed cluster's index frame (the member nearest its centroid) is
described by the detector (classes and counts) and embedded (the embedder adds OCR for
aux-minilm), and becomes an IndexEntry.

Only the open cluster's frames are held (their JPEGs, to pick the index frame at close);
the caller acknowledges a frame's record once its cluster's entry is published.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from services.common.frames import time_key
from services.indexing import metrics
from services.indexing.clustering import Cluster, ContentSplit, IncrementalClusterer, Signature
from services.indexing.config import IndexingConfig
from services.indexing.scenes import SceneParams, SceneSegmenter
from services.models.context import count_labels, describe_counts
from services.models.detectors.base import Detector
from services.models.embedders.base import Embedder
from vigil.memory.v1 import memory_pb2

log = logging.getLogger(__name__)

_POINT_NAMESPACE = uuid.UUID("6f1c63a2-5b0e-4d55-9a57-0c1d2e3f4a5b")


def point_id_for(camera_id: str, start_s: float) -> str:
    """Deterministic point id of a cluster: re-indexing the same frames replaces, never duplicates."""
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{camera_id}/{time_key(start_s)}"))


@dataclass
class PendingFrame:
    """A frame of the open cluster: where it sits on the time axis, its JPEG, and the caller's handle to ack."""

    time_s: float
    capture_time_ns: int
    seq: int
    jpeg: bytes
    handle: Any = None


@dataclass
class ClosedCluster:
    """A cluster ready to be described and embedded."""

    camera_id: str
    cluster: Cluster
    members: list[PendingFrame]
    index_member: PendingFrame

    @property
    def handles(self) -> list[Any]:
        """The callers' handles of the member frames, to ack once the cluster is published."""
        return [m.handle for m in self.members]


class CameraIndexer:
    """Scene segmentation + incremental clustering of one camera's frames, one frame at a time."""

    def __init__(
        self,
        camera_id: str,
        scene_params: SceneParams,
        cluster_threshold: float,
        *,
        content: ContentSplit | None = None,
        detector: Detector | None = None,
        min_confidence: float = 0.35,
    ) -> None:
        self.camera_id = camera_id
        self._params = scene_params
        self._threshold = cluster_threshold
        # Both needed for content-driven splits; either missing leaves the paper's pixel rule.
        self._content = content if detector is not None else None
        self._detector = detector
        self._min_confidence = min_confidence
        self.detector_runs = 0
        self._scene_base = 0
        self._reset()
        self.last_time_s: float | None = None
        self.last_push_monotonic = time.monotonic()

    @classmethod
    def from_config(cls, camera_id: str, config: IndexingConfig, detector: Detector | None) -> CameraIndexer:
        """One camera's indexer with the service's settings (content split on when a detector is given)."""
        return cls(
            camera_id,
            config.scenes.params(),
            config.cluster_threshold,
            content=config.content_split.params(),
            detector=detector,
            min_confidence=config.aux_min_confidence,
        )

    def _reset(self) -> None:
        self._segmenter = SceneSegmenter(self._params)
        self._clusterer = IncrementalClusterer(self._threshold, content=self._content)
        self._open: Cluster | None = None
        self._pending: list[PendingFrame] = []
        self._k = 0
        self._cuts = 0

    def push(self, frame: PendingFrame, image: np.ndarray) -> list[ClosedCluster]:
        """Add one decoded frame; returns the clusters this frame closed (zero or one, two on a time jump)."""
        closed: list[ClosedCluster] = []
        if self.last_time_s is not None and frame.time_s < self.last_time_s:
            log.info(
                "%s: time went back %.3fs -> %.3fs; closing the open cluster",
                self.camera_id,
                self.last_time_s,
                frame.time_s,
            )
            closed += self.flush()
            self._scene_base += self._cuts
            self._reset()
        self.last_time_s = frame.time_s
        self.last_push_monotonic = time.monotonic()
        cut, feats = self._segmenter.push(self._k, frame.time_s, image)
        if cut is not None:
            metrics.SCENES.labels(str(cut.forced).lower()).inc()
            self._cuts += 1
            closed += self._close(self._clusterer.new_scene())
        runs = self._clusterer.detector_runs
        cluster, started = self._clusterer.push(self._k, frame.time_s, feats.small, self._signature_of(image))
        if self._clusterer.detector_runs > runs:
            metrics.CONTENT_CHECKS.inc(self._clusterer.detector_runs - runs)
            self.detector_runs += self._clusterer.detector_runs - runs
        if started and self._open is not None and self._open is not cluster and self._open.index_frame >= 0:
            # The clusterer finalised the previous cluster when this one started.
            closed += self._close([self._open])
        self._open = cluster
        self._pending.append(frame)
        self._k += 1
        metrics.FRAMES.inc()
        return closed

    def _signature_of(self, image: np.ndarray) -> Callable[[], Signature] | None:
        detector = self._detector
        if self._content is None or detector is None:
            return None

        def signature() -> Signature:
            # The full frame, not the small copy: the detector needs the pixels of distant cars.
            return count_labels(d.label for d in detector.detect(image) if d.confidence >= self._min_confidence)

        return signature

    def flush(self) -> list[ClosedCluster]:
        """Close the open cluster (end of stream, or the camera went quiet)."""
        if self._open is None:
            return []
        return self._close(self._clusterer.new_scene())

    def _close(self, clusters: Sequence[Cluster]) -> list[ClosedCluster]:
        out = []
        for c in clusters:
            if c is not self._open or not self._pending:
                continue
            # The pending frames are exactly the open cluster's members, in order (clusters are contiguous).
            members, self._pending = self._pending, []
            first = c.members[0]
            index_member = members[c.index_frame - first]
            c.scene_id += self._scene_base
            out.append(ClosedCluster(self.camera_id, c, members, index_member))
            self._open = None
            # The clusterer would otherwise keep every cluster of a never-ending stream.
            self._clusterer.clusters.clear()
        return out

    @property
    def open_frames(self) -> int:
        """Frames held for the open cluster."""
        return len(self._pending)


def describe_detections(labels: Sequence[str], phrases: Mapping[str, str]) -> str:
    """Detector classes and counts in words, e.g. '3 person, 1 person fallen on the ground'."""
    return describe_counts(count_labels(phrases.get(label, label) for label in labels))


class ClusterEmbedder:
    """Closed clusters -> IndexEntry: detector description, embedding (with OCR), cluster members."""

    def __init__(
        self,
        embedder: Embedder,
        detector: Detector | None,
        class_phrases: Mapping[str, str],
        min_confidence: float,
    ) -> None:
        self.embedder = embedder
        self.detector = detector
        self.class_phrases = dict(class_phrases)
        self.min_confidence = min_confidence

    def describe(self, image: np.ndarray) -> str:
        """The detector part of the auxiliary prompt ('' without a detector)."""
        if self.detector is None:
            return ""
        dets = self.detector.detect(image)
        return describe_detections([d.label for d in dets if d.confidence >= self.min_confidence], self.class_phrases)

    def entries(self, closed: Sequence[ClosedCluster]) -> list[memory_pb2.IndexEntry]:
        """One IndexEntry per closed cluster (embedded as one batch)."""
        if not closed:
            return []
        images = []
        for cc in closed:
            image = cv2.imdecode(np.frombuffer(cc.index_member.jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None:  # members were decoded on the way in; this cannot fail short of memory corruption
                raise ValueError(f"index frame of {cc.camera_id}@{cc.index_member.time_s:.3f}s no longer decodes")
            images.append(image)
        t = time.perf_counter()
        texts = [self.describe(im) for im in images]
        metrics.STAGE_SECONDS.labels("describe").observe(time.perf_counter() - t)
        t = time.perf_counter()
        embedded = self.embedder.embed_frames(images, texts)
        metrics.STAGE_SECONDS.labels("embed").observe(time.perf_counter() - t)
        out = []
        now = time.time_ns()
        for cc, emb in zip(closed, embedded, strict=True):
            members = cc.members
            out.append(
                memory_pb2.IndexEntry(
                    point_id=point_id_for(cc.camera_id, members[0].time_s),
                    camera_id=cc.camera_id,
                    scene_id=cc.cluster.scene_id,
                    cluster_id=cc.cluster.cluster_id,
                    start_s=members[0].time_s,
                    end_s=members[-1].time_s,
                    index_frame=_ref(cc.index_member),
                    members=[_ref(m) for m in members],
                    vectors=[
                        memory_pb2.NamedVector(name=name, values=np.asarray(vec, np.float32).tolist())
                        for name, vec in emb.vectors.items()
                    ],
                    aux_text=emb.prompt,
                    embedder=self.embedder.name,
                    index_jpeg=cc.index_member.jpeg,
                    indexed_time_ns=now,
                )
            )
        metrics.CLUSTERS.inc(len(out))
        return out


def _ref(f: PendingFrame) -> memory_pb2.FrameRef:
    return memory_pb2.FrameRef(time_s=f.time_s, capture_time_ns=f.capture_time_ns, seq=f.seq)
