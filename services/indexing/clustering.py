"""Incremental frame clustering inside a scene (Venus section IV-B2).

Each frame is flattened to a vector of its downscaled pixels (`size`, grey,
0-1). The first frame of a scene starts a cluster; a later frame joins the
nearest cluster centroid (running mean) if the RMS distance is within
`threshold`, else it starts a new cluster. Clusters must stay contiguous in
time (the reason Venus prefers incremental clustering to K-Means or DBSCAN),
so the only cluster a frame can join is the newest one, when it is within the
threshold. Otherwise a new cluster starts; if an older cluster of the scene is
within the threshold (the scene came back to an earlier view), the new cluster
records the nearest such one in `resembles`. The index frame of a cluster is its member
nearest to the centroid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class Cluster:
    """Contiguous frames of one scene that look alike."""

    cluster_id: int
    scene_id: int
    members: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    centroid: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    index_frame: int = -1
    index_distance: float = float("inf")
    resembles: int | None = None

    @property
    def start_s(self) -> float:
        """Time of the first member."""
        return self.times[0]

    @property
    def end_s(self) -> float:
        """Time of the last member."""
        return self.times[-1]


def frame_vector(image_bgr: np.ndarray, size: tuple[int, int] = (32, 18)) -> np.ndarray:
    """The flattened, downscaled grey frame in [0, 1]."""
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape
    kx, ky = max(1, w // size[0]), max(1, h // size[1])
    if kx * ky > 1 and w % kx == 0 and h % ky == 0:
        # OpenCV's area resize is fast only for whole-number factors (160x120 -> 32x18 is not): take those first.
        grey = cv2.resize(grey, (w // kx, h // ky), interpolation=cv2.INTER_AREA)
    return (cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0).ravel()


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    return float(np.sqrt(np.dot(d, d) / d.size))


class IncrementalClusterer:
    """Clusters one camera's frames scene by scene; call new_scene() at every cut."""

    def __init__(self, threshold: float = 0.08, size: tuple[int, int] = (32, 18)) -> None:
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.threshold = threshold
        self.size = size
        self.clusters: list[Cluster] = []
        self._scene_clusters: list[Cluster] = []
        self._scene_id = -1
        # Ids come from a counter, not len(clusters): a streaming caller may clear closed clusters.
        self._next_id = 0
        # Members of each cluster, kept until the cluster is closed, to pick the index frame.
        self._vectors: dict[int, list[np.ndarray]] = {}

    def new_scene(self) -> list[Cluster]:
        """Start a new scene; returns the clusters of the scene that just ended (now final)."""
        closed = self._scene_clusters
        for c in closed:
            self._finalise(c)
        self._scene_clusters = []
        self._scene_id += 1
        return closed

    def push(self, index: int, time_s: float, image_bgr: np.ndarray) -> tuple[Cluster, bool]:
        """Assign a frame; returns its cluster and whether the frame started it."""
        if self._scene_id < 0:
            self.new_scene()
        v = frame_vector(image_bgr, self.size)
        if self._scene_clusters:
            # Only the open cluster can take the frame: the older ones are looked at only when a new cluster starts.
            if _rms(self._scene_clusters[-1].centroid, v) <= self.threshold:
                c = self._scene_clusters[-1]
                n = len(c.members)
                c.centroid = (c.centroid * n + v) / (n + 1)
                c.members.append(index)
                c.times.append(time_s)
                self._vectors[c.cluster_id].append(v)
                return c, False
            dists = np.sqrt(np.mean((np.stack([c.centroid for c in self._scene_clusters]) - v) ** 2, axis=1))
            nearest = int(np.argmin(dists))
            resembles = self._scene_clusters[nearest].cluster_id if dists[nearest] <= self.threshold else None
            self._finalise(self._scene_clusters[-1])
        else:
            resembles = None
        c = Cluster(self._next_id, self._scene_id, [index], [time_s], v.copy(), resembles=resembles)
        self._next_id += 1
        self.clusters.append(c)
        self._scene_clusters.append(c)
        self._vectors[c.cluster_id] = [v]
        return c, True

    def _finalise(self, c: Cluster) -> None:
        vectors = self._vectors.pop(c.cluster_id, None)
        if not vectors:
            return
        d = np.sqrt(np.mean((np.stack(vectors) - c.centroid) ** 2, axis=1))
        best = int(np.argmin(d))
        c.index_frame, c.index_distance = c.members[best], float(d[best])

    def finish(self) -> list[Cluster]:
        """End of stream: finalise the open scene's clusters; returns every cluster."""
        self.new_scene()
        return self.clusters
