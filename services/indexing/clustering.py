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

On a fixed camera that rule splits whenever anything moves: every car that passes
moves the thumbnail past the threshold. With `ContentSplit` (our addition, not the
paper's) a frame beyond the threshold is only a candidate, and so is one where a cell
of a `grid` over the thumbnail changed by more than `local_threshold` since the
detector last looked (on a busy road the centroid is the empty road, and one truck
barely moves the whole-frame distance). A new cluster starts when what is in view
changed, by the detector's per-class counts (a `Signature`: a class came or went, or
a count moved by more than `count_slack` and by more than `count_tolerance` of the
larger, the same change on `confirm` detector runs in a row, so one flicker of a
low-confidence box does not split), or at once when the thumbnail drifted beyond
`drift_threshold` from the centroid (light, a moved camera: changes the detector has
no class for). The detector runs only on candidate frames, at most once per
`detect_interval_s` of stream time, and on the first frame of a cluster. Time
coverage stays bounded by the segmenter's forced cut (`max_scene_s`). Without a
detector (`signature` not given) the rule is the paper's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    # What the detector saw in view when the cluster started (None: not looked, or no detector).
    signature: dict[str, int] | None = None

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


# Detector class -> how many are in view.
Signature = Mapping[str, int]


def signature_changed(a: Signature, b: Signature, count_tolerance: float, count_slack: int = 0) -> bool:
    """Whether two views hold different things.

    A class is in one view only, or its counts differ by more than `count_slack` and by more
    than `count_tolerance` of the larger (a detector that finds 3 to 6 of the same cars from
    frame to frame is not a change; 2 cars becoming 9 is).
    """
    for label in a.keys() | b.keys():
        x, y = a.get(label, 0), b.get(label, 0)
        if (x > 0) != (y > 0):
            return True
        if abs(x - y) > max(count_slack, count_tolerance * max(x, y)):
            return True
    return False


@dataclass(frozen=True)
class ContentSplit:
    """Which frames are candidates and when a candidate starts a new cluster: see the module docstring."""

    drift_threshold: float = 0.2
    detect_interval_s: float = 1.0
    confirm: int = 3
    count_tolerance: float = 0.5
    count_slack: int = 2
    # Mean absolute change (0-1) of any cell of a `grid` over the thumbnail that makes a frame a candidate.
    local_threshold: float = 0.03
    grid: tuple[int, int] = (4, 3)

    def __post_init__(self) -> None:
        if (
            self.drift_threshold <= 0
            or self.detect_interval_s < 0
            or self.confirm < 1
            or self.count_tolerance < 0
            or self.count_slack < 0
            or self.local_threshold <= 0
            or min(self.grid) < 1
        ):
            raise ValueError(f"invalid content split {self}")


def local_change(a: np.ndarray, b: np.ndarray, size: tuple[int, int], grid: tuple[int, int]) -> float:
    """The largest mean absolute difference over the cells of a `grid` (columns, rows) laid on two thumbnails."""
    (w, h), (gx, gy) = size, grid
    return float(np.abs(a - b).reshape(gy, h // gy, gx, w // gx).mean(axis=(1, 3)).max())


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    return float(np.sqrt(np.dot(d, d) / d.size))


class IncrementalClusterer:
    """Clusters one camera's frames scene by scene; call new_scene() at every cut."""

    def __init__(
        self, threshold: float = 0.08, size: tuple[int, int] = (32, 18), content: ContentSplit | None = None
    ) -> None:
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        if content is not None and content.drift_threshold < threshold:
            raise ValueError(f"drift_threshold {content.drift_threshold} is below the cluster threshold {threshold}")
        self.threshold = threshold
        self.size = size
        self.content = content
        self.detector_runs = 0
        self._last_detect_s: float | None = None
        # A changed signature seen on the last detector runs, and on how many in a row.
        self._pending: Signature | None = None
        self._pending_runs = 0
        # The thumbnail the detector last looked at.
        self._reference: np.ndarray | None = None
        if content is not None and (size[0] % content.grid[0] or size[1] % content.grid[1]):
            raise ValueError(f"thumbnail {size} must divide into the {content.grid} grid")
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

    def push(
        self, index: int, time_s: float, image_bgr: np.ndarray, signature: Callable[[], Signature] | None = None
    ) -> tuple[Cluster, bool]:
        """Assign a frame; returns its cluster and whether the frame started it.

        `signature` (with `content` set) says what is in view in this frame; it is called only when needed.
        """
        if self._scene_id < 0:
            self.new_scene()
        v = frame_vector(image_bgr, self.size)
        new_signature: Signature | None = None
        if self._scene_clusters:
            # Only the open cluster can take the frame: the older ones are looked at only when a new cluster starts.
            open_cluster = self._scene_clusters[-1]
            distance = _rms(open_cluster.centroid, v)
            if self.content is not None and signature is not None:
                split, new_signature = self._content_changed(open_cluster, v, distance, time_s, signature)
            else:
                split = distance > self.threshold
            if not split:
                c = open_cluster
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
        if new_signature is None and self.content is not None and signature is not None and self._may_detect(time_s):
            new_signature = self._detect(time_s, v, signature)
        c.signature = None if new_signature is None else dict(new_signature)
        self._pending, self._pending_runs = None, 0
        self._next_id += 1
        self.clusters.append(c)
        self._scene_clusters.append(c)
        self._vectors[c.cluster_id] = [v]
        return c, True

    def _may_detect(self, time_s: float) -> bool:
        assert self.content is not None
        last = self._last_detect_s
        # Time going back (a replayed file) resets the rate limit rather than silencing the detector.
        return last is None or time_s < last or time_s - last >= self.content.detect_interval_s

    def _detect(self, time_s: float, v: np.ndarray, signature: Callable[[], Signature]) -> Signature:
        self._last_detect_s = time_s
        self._reference = v
        self.detector_runs += 1
        return signature()

    def _content_changed(
        self, c: Cluster, v: np.ndarray, distance: float, time_s: float, signature: Callable[[], Signature]
    ) -> tuple[bool, Signature | None]:
        """Whether this frame starts a new cluster, and the new cluster's signature if the detector looked."""
        assert self.content is not None
        if distance > self.content.drift_threshold:
            return True, None
        if not self._may_detect(time_s):
            return False, None
        # The centroid of a busy road is the empty road, and one truck moves its 32x18 mean by less than the
        # threshold: a cell of the thumbnail that changed since the detector last looked makes a candidate too.
        moved = (
            distance > self.threshold
            or self._reference is None
            or local_change(v, self._reference, self.size, self.content.grid) > self.content.local_threshold
        )
        if not moved:
            return False, None
        seen = self._detect(time_s, v, signature)
        if c.signature is None:
            # The cluster started without a look (rate limit): this is its content from now on.
            c.signature = dict(seen)
            return False, None
        tolerance, slack = self.content.count_tolerance, self.content.count_slack
        if not signature_changed(c.signature, seen, tolerance, slack):
            self._pending, self._pending_runs = None, 0
            return False, None
        if self._pending is not None and not signature_changed(self._pending, seen, tolerance, slack):
            self._pending_runs += 1
        else:
            self._pending, self._pending_runs = seen, 1
        return self._pending_runs >= self.content.confirm, seen

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
