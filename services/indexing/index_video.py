"""Scene segmentation and clustering over a whole source: the `vigil index` command's domain."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.common.frames import RawFrame
from services.common.prefetch import read_ahead
from services.indexing.clustering import Cluster, IncrementalClusterer
from services.indexing.scenes import SceneCut, SceneParams, SceneSegmenter, downscale


@dataclass
class Scene:
    """A contiguous partition of the stream."""

    scene_id: int
    start_frame: int
    start_s: float
    cut_score: float
    forced: bool
    end_frame: int = -1
    end_s: float = 0.0
    clusters: list[Cluster] = field(default_factory=list)


@dataclass
class VideoIndex:
    """Scenes, each with its clusters and index frames."""

    scenes: list[Scene]
    frames: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "frames": self.frames,
            "scenes": [
                {
                    "scene": s.scene_id,
                    "start_frame": s.start_frame,
                    "end_frame": s.end_frame,
                    "start_s": round(s.start_s, 3),
                    "end_s": round(s.end_s, 3),
                    "cut_score": None if s.scene_id == 0 else round(s.cut_score, 2),
                    "forced_cut": s.forced,
                    "clusters": [
                        {
                            "cluster": c.cluster_id,
                            "index_frame": c.index_frame,
                            "members": len(c.members),
                            "start_frame": c.members[0],
                            "end_frame": c.members[-1],
                            "resembles": c.resembles,
                        }
                        for c in s.clusters
                    ],
                }
                for s in self.scenes
            ],
        }


def index_frames(
    frames: Iterable[RawFrame], scene_params: SceneParams | None = None, cluster_threshold: float = 0.08
) -> VideoIndex:
    """Segment and cluster a frame sequence."""
    segmenter = SceneSegmenter(scene_params)
    clusterer = IncrementalClusterer(cluster_threshold)
    scenes: list[Scene] = []
    last: RawFrame | None = None
    n = 0
    for f in frames:
        n += 1
        cut: SceneCut | None
        cut, feats = segmenter.push(f.index, f.pts_s, f.image)
        if cut is not None:
            if scenes and last is not None:
                scenes[-1].end_frame, scenes[-1].end_s = last.index, last.pts_s
            clusterer.new_scene()
            scenes.append(Scene(len(scenes), f.index, f.pts_s, cut.score, cut.forced))
        # The segmenter's downscaled copy: clustering compares 32x18 thumbnails, so the full frame is not needed.
        clusterer.push(f.index, f.pts_s, feats.small)
        last = f
    clusters = clusterer.finish()
    if scenes and last is not None:
        scenes[-1].end_frame, scenes[-1].end_s = last.index, last.pts_s
    for c in clusters:
        scenes[c.scene_id].clusters.append(c)
    return VideoIndex(scenes, n)


def index_frames_ahead(
    frames: Iterable[RawFrame], scene_params: SceneParams | None = None, cluster_threshold: float = 0.08
) -> VideoIndex:
    """index_frames with `frames` decoded, and shrunk to the working width, in a read-ahead thread.

    Segmentation and clustering only ever look at the small copy, so the resize can run beside the
    decoder (OpenCV releases the GIL for both), as PySceneDetect's decode thread also downscales.
    """
    params = scene_params or SceneParams()
    small = (RawFrame(f.index, f.pts_s, downscale(f.image, params.width)) for f in frames)
    return index_frames(read_ahead(small), params, cluster_threshold)
