"""Streaming scene segmentation (Venus section IV-B1, eq. 1).

The score of frame t is a weighted sum of the mean absolute differences between
frame t and frame t-1 in four feature maps: hue, saturation, lightness (HSV
value) and a Canny edge map, each on a 0-255 scale:

    s_t = (w_h |H_t - H_{t-1}|_1 + w_s |S_t - S_{t-1}|_1 + w_l |L_t - L_{t-1}|_1
           + w_e |E_t - E_{t-1}|_1) / (w_h + w_s + w_l + w_e)

with |.|_1 taken as the mean over pixels (the L1 norm divided by the pixel
count, so the score does not depend on resolution). The extraction lost the
paper's weights and threshold; we use PySceneDetect's ContentDetector, which
computes the same four-channel score, for both: weights (1, 1, 1, 0) by
default, and a boundary when s_t >= 27. Hue is circular, so its difference
wraps (OpenCV hue is 0-179), and it is weighted by the pixels' saturation:
on grey pixels hue is undefined and only sensor noise (our departure from
PySceneDetect, which lets grey noise through the hue channel). For static cameras, a scene is also closed after
`max_scene_s` without a cut, as the paper's minimum temporal threshold does.

Frames are downscaled to `width` pixels wide first: the score changes little
and the cost drops with the pixel count (this runs on every frame). The
downscale is bilinear, as PySceneDetect's: an area average of a 720p frame costs
as much as decoding it, and eq. 1's cuts (threshold 27 on a 0-255 scale) do not
hinge on the sub-pixel detail it would keep. The edge map is only computed when
its weight is non-zero (the default weights leave it out).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class SceneParams:
    """Weights (hue, saturation, lightness, edges), the cut threshold and the forced split."""

    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 0.0)
    threshold: float = 27.0
    max_scene_s: float = 60.0
    # Frames closer than this to the last cut never start a new scene (flashes, fades).
    min_scene_s: float = 0.5
    width: int = 160

    def __post_init__(self) -> None:
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError(f"weights must be >= 0 and not all 0, got {self.weights}")
        if self.threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")
        if self.max_scene_s <= 0 or self.min_scene_s < 0:
            raise ValueError("max_scene_s must be > 0 and min_scene_s >= 0")


@dataclass(frozen=True)
class FrameFeatures:
    """The four feature maps of one (downscaled) frame; `edges` is None when it was not asked for."""

    hue: np.ndarray
    sat: np.ndarray
    lum: np.ndarray
    edges: np.ndarray | None
    small: np.ndarray  # the downscaled BGR frame, reused by clustering


def downscale(image_bgr: np.ndarray, width: int) -> np.ndarray:
    """The frame `width` pixels wide (bilinear), or itself when it is no wider."""
    h, w = image_bgr.shape[:2]
    if w <= width:
        return image_bgr
    return cv2.resize(image_bgr, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_LINEAR)


def features(image_bgr: np.ndarray, width: int, edges: bool = True) -> FrameFeatures:
    """Downscale and extract H, S, V and (if `edges`) Canny edges, thresholds from the median as PySceneDetect."""
    small = downscale(image_bgr, width)
    hue, sat, lum = cv2.split(cv2.cvtColor(small, cv2.COLOR_BGR2HSV))
    edge_map = None
    if edges:
        median = float(np.median(lum))
        edge_map = cv2.Canny(lum, int(max(0, 0.67 * median)), int(min(255, 1.33 * median)))
    return FrameFeatures(hue, sat, lum, edge_map, small)


def _mean_absdiff(a: np.ndarray, b: np.ndarray) -> float:
    # cv2.absdiff on uint8 saturates into uint8: no int16 temporaries, and cv2.mean sums in double.
    return float(cv2.mean(cv2.absdiff(a, b))[0])


def scene_score(a: FrameFeatures, b: FrameFeatures, weights: tuple[float, float, float, float]) -> float:
    """Eq. 1 between two frames' features (0-255 scale)."""
    wh, ws, wl, we = weights
    total = 0.0
    if wh:
        dh = cv2.absdiff(a.hue, b.hue)  # 0-179
        dh = cv2.min(dh, np.subtract(180, dh, dtype=np.uint8))  # circular hue: 0-90
        # Hue is undefined on grey pixels and flickers with sensor noise there: weigh it by saturation.
        # dh * 255/90 (to 0-255) * min(sat)/255 is dh * min(sat) / 90; the product fits 16 bits (90 * 255).
        weighted = cv2.multiply(dh, cv2.min(a.sat, b.sat), dtype=cv2.CV_16U)
        total += wh * cv2.mean(weighted)[0] / 90.0
    if ws:
        total += ws * _mean_absdiff(a.sat, b.sat)
    if wl:
        total += wl * _mean_absdiff(a.lum, b.lum)
    if we:
        if a.edges is None or b.edges is None:
            raise ValueError("the edge weight is non-zero but the features have no edge map")
        total += we * _mean_absdiff(a.edges, b.edges)
    return float(total / (wh + ws + wl + we))


@dataclass(frozen=True)
class SceneCut:
    """A boundary before frame `index`: by content (`score` >= threshold) or forced by duration."""

    index: int
    time_s: float
    score: float
    forced: bool


class SceneSegmenter:
    """Feeds on one camera's frames in order; reports where new scenes start."""

    def __init__(self, params: SceneParams | None = None) -> None:
        self.params = params or SceneParams()
        self._prev: FrameFeatures | None = None
        self._scene_start_s: float | None = None

    def push(self, index: int, time_s: float, image_bgr: np.ndarray) -> tuple[SceneCut | None, FrameFeatures]:
        """Score one frame; return a cut if a new scene starts at it (the first frame starts one too)."""
        p = self.params
        feats = features(image_bgr, p.width, edges=p.weights[3] > 0)
        cut: SceneCut | None = None
        if self._prev is None or self._scene_start_s is None:
            cut = SceneCut(index, time_s, 0.0, forced=False)
        elif self._prev.hue.shape != feats.hue.shape:
            cut = SceneCut(index, time_s, float("inf"), forced=False)  # resolution change: a new stream
        else:
            score = scene_score(self._prev, feats, p.weights)
            elapsed = time_s - self._scene_start_s
            if score >= p.threshold and elapsed >= p.min_scene_s:
                cut = SceneCut(index, time_s, score, forced=False)
            elif elapsed >= p.max_scene_s:
                cut = SceneCut(index, time_s, score, forced=True)
        if cut is not None:
            self._scene_start_s = time_s
        self._prev = feats
        return cut, feats
