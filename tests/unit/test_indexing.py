"""Scene score and boundaries (Venus eq. 1) and incremental clustering invariants, on synthetic frames."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from services.common.frames import RawFrame
from services.indexing.clustering import ContentSplit, IncrementalClusterer, signature_changed
from services.indexing.index_video import index_frames, index_frames_ahead
from services.indexing.scenes import SceneParams, SceneSegmenter, features, scene_score

W = (1.0, 1.0, 1.0, 0.0)


def solid(bgr: tuple[int, int, int], noise: int = 0, seed: int = 0) -> np.ndarray:
    img = np.full((90, 160, 3), bgr, np.uint8)
    if noise:
        rng = np.random.default_rng(seed)
        img = np.clip(img.astype(np.int16) + rng.integers(-noise, noise + 1, img.shape), 0, 255).astype(np.uint8)
    return img


def test_identical_frames_score_zero_and_hue_wraps() -> None:
    a = features(solid((0, 0, 200)), 160)
    assert scene_score(a, a, W) == 0.0
    # Hue 0 and hue 179 are neighbours on the colour wheel: a tiny difference, not 179.
    red1 = features(np.full((10, 10, 3), (0, 0, 255), np.uint8), 160)
    red2 = features(np.full((10, 10, 3), (3, 0, 255), np.uint8), 160)
    assert scene_score(red1, red2, (1, 0, 0, 0)) < 10


def test_cut_on_content_change_not_on_noise() -> None:
    seg = SceneSegmenter(SceneParams(min_scene_s=0))
    frames = [solid((40, 40, 40), 4, i) for i in range(10)] + [solid((200, 30, 220), 4, i) for i in range(10)]
    cuts = [seg.push(i, i / 10, f)[0] for i, f in enumerate(frames)]
    assert [c.index for c in cuts if c] == [0, 10]


def test_forced_cut_for_static_camera() -> None:
    seg = SceneSegmenter(SceneParams(max_scene_s=2.0))
    cuts = [seg.push(i, i * 0.5, solid((50, 50, 50)))[0] for i in range(10)]
    assert [(c.index, c.forced) for c in cuts if c] == [(0, False), (4, True), (8, True)]


def test_min_scene_duration_suppresses_flashes() -> None:
    seg = SceneSegmenter(SceneParams(min_scene_s=1.0))
    frames = [solid((40, 40, 40))] * 3 + [solid((250, 250, 250))] + [solid((40, 40, 40))] * 3
    cuts = [seg.push(i, i * 0.1, f)[0] for i, f in enumerate(frames)]
    assert [c.index for c in cuts if c] == [0]


@pytest.mark.parametrize("bad", [{"weights": (0, 0, 0, 0)}, {"threshold": 0}, {"max_scene_s": 0}])
def test_invalid_params(bad: dict) -> None:
    with pytest.raises(ValueError):
        SceneParams(**bad)


def test_clusters_are_contiguous_and_within_threshold() -> None:
    rng = np.random.default_rng(0)
    views = [solid((int(b), int(g), int(r))) for b, g, r in rng.integers(0, 255, (3, 3))]
    # A, A, A, B, B, A, A, C: returning to A must not join the first cluster (contiguity).
    seq = [0, 0, 0, 1, 1, 0, 0, 2]
    cl = IncrementalClusterer(threshold=0.05)
    for i, v in enumerate(seq):
        cl.push(i, i * 0.1, views[v])
    clusters = cl.finish()
    assert [c.members for c in clusters] == [[0, 1, 2], [3, 4], [5, 6], [7]]
    assert clusters[2].resembles == 0
    for c in clusters:
        assert c.members == list(range(c.members[0], c.members[-1] + 1))
        assert c.index_frame in c.members


def test_index_frame_is_nearest_to_centroid() -> None:
    cl = IncrementalClusterer(threshold=0.5)
    for i, level in enumerate([100, 110, 120]):
        cl.push(i, float(i), solid((level, level, level)))
    (c,) = cl.finish()
    assert c.index_frame == 1


def test_index_frames_scenes_partition_the_stream() -> None:
    frames = [RawFrame(i, i / 10, solid((30, 30, 30) if i < 15 else (220, 200, 40), 3, i)) for i in range(30)]
    idx = index_frames(frames, SceneParams(min_scene_s=0))
    assert [(s.start_frame, s.end_frame) for s in idx.scenes] == [(0, 14), (15, 29)]
    members = sorted(m for s in idx.scenes for c in s.clusters for m in c.members)
    assert members == list(range(30))


def test_edges_only_when_weighted() -> None:
    img = solid((40, 90, 200), 5)
    assert features(img, 160, edges=False).edges is None
    with_edges = features(img, 160)
    assert with_edges.edges is not None
    # The same score without the edge map as with it, when its weight is 0.
    other = solid((60, 60, 60), 5, seed=1)
    assert scene_score(features(img, 160, edges=False), features(other, 160, edges=False), W) == pytest.approx(
        scene_score(with_edges, features(other, 160), W)
    )
    with pytest.raises(ValueError):
        scene_score(features(img, 160, edges=False), features(other, 160, edges=False), (1, 1, 1, 1))


def test_score_matches_eq_1_written_out() -> None:
    """The OpenCV arithmetic equals eq. 1 computed directly in float: saturation-weighted circular hue, S, V."""
    rng = np.random.default_rng(3)
    a, b = (rng.integers(0, 256, (90, 160, 3), dtype=np.uint8) for _ in range(2))
    fa, fb = features(a, 160, edges=False), features(b, 160, edges=False)
    h = np.abs(fa.hue.astype(float) - fb.hue.astype(float))
    dh = np.minimum(h, 180 - h) * 255 / 90 * np.minimum(fa.sat, fb.sat) / 255
    ds = np.abs(fa.sat.astype(float) - fb.sat.astype(float))
    dl = np.abs(fa.lum.astype(float) - fb.lum.astype(float))
    expected = (dh.mean() + 2 * ds.mean() + 3 * dl.mean()) / 6
    assert scene_score(fa, fb, (1, 2, 3, 0)) == pytest.approx(expected, rel=1e-9)


def test_signature_change_is_a_class_coming_or_going_or_a_large_count_move() -> None:
    assert not signature_changed({"car": 5}, {"car": 7}, 0.5, 2)  # the detector finding more of the same cars
    assert not signature_changed({"car": 1}, {"car": 3}, 0.5, 2)
    assert signature_changed({"car": 2}, {"car": 9}, 0.5, 2)  # a jam forming
    assert signature_changed({"car": 5}, {"car": 5, "truck": 1}, 0.5, 2)  # a truck came
    assert signature_changed({"car": 5, "truck": 1}, {"car": 5}, 0.5, 2)  # ... and went
    assert not signature_changed({}, {}, 0.5, 2)
    assert signature_changed({"car": 4}, {"car": 6}, 0.0, 0)  # no tolerance: any count


class ScriptedDetector:
    """Signatures by frame index, counting the calls (the clusterer must call it sparingly)."""

    def __init__(self, script: dict[int, dict[str, int]]) -> None:
        self.script = script
        self.calls: list[int] = []

    def at(self, i: int) -> Callable[[], dict[str, int]]:
        def signature() -> dict[str, int]:
            self.calls.append(i)
            return self.script.get(i, {"car": 3})

        return signature


def traffic(i: int, level: int = 120) -> np.ndarray:
    """A grey road with a dark 'car' somewhere along it: every frame differs from the last by far more than 0.08."""
    img = np.full((90, 160, 3), level, np.uint8)
    x = (i * 37) % 130
    img[30:60, x : x + 30] = level - 100
    return img


def test_content_split_ignores_moving_cars_but_splits_when_a_truck_stays() -> None:
    # Frames at 5 fps; the detector sees a truck from frame 20 on.
    det = ScriptedDetector({i: {"car": 3, "truck": 1} for i in range(20, 60)})
    cl = IncrementalClusterer(0.08, content=ContentSplit(detect_interval_s=1.0, confirm=3))
    starts = [cl.push(i, i / 5, traffic(i), det.at(i))[1] for i in range(60)]
    # Pixel-rule clustering would split at nearly every frame; here: the start and once, 3 looks after the truck came.
    assert [i for i, s in enumerate(starts) if s] == [0, 30]
    assert cl.clusters[1].signature == {"car": 3, "truck": 1}
    # At most one look per second of stream time (12 s here), plus the first frame.
    assert len(det.calls) <= 13
    assert all(b - a >= 5 for a, b in zip(det.calls, det.calls[1:], strict=False))


def test_content_split_does_not_follow_one_flicker() -> None:
    det = ScriptedDetector({10: {"car": 3, "truck": 1}, 20: {"car": 3, "bus": 1}})
    cl = IncrementalClusterer(0.08, content=ContentSplit(detect_interval_s=1.0, confirm=2))
    starts = [cl.push(i, i / 5, traffic(i), det.at(i))[1] for i in range(40)]
    assert [i for i, s in enumerate(starts) if s] == [0]


def test_content_split_still_splits_on_a_large_drift_without_looking() -> None:
    det = ScriptedDetector({})
    cl = IncrementalClusterer(0.08, content=ContentSplit(drift_threshold=0.3))
    frames = [traffic(i, 120) for i in range(10)] + [traffic(i, 240) for i in range(10, 20)]  # lights on
    starts = [cl.push(i, i / 5, f, det.at(i))[1] for i, f in enumerate(frames)]
    assert [i for i, s in enumerate(starts) if s] == [0, 10]


def test_without_a_detector_the_pixel_rule_applies() -> None:
    cl = IncrementalClusterer(0.08, content=ContentSplit())
    starts = [cl.push(i, i / 5, traffic(i))[1] for i in range(10)]
    assert sum(starts) > 5
    with pytest.raises(ValueError):
        IncrementalClusterer(0.08, content=ContentSplit(drift_threshold=0.05))
    with pytest.raises(ValueError):
        ContentSplit(confirm=0)


def test_index_frames_ahead_is_index_frames() -> None:
    """Decoding and downscaling in a read-ahead thread changes nothing in the result."""
    frames = [RawFrame(i, i / 10, solid((30, 30, 30) if i < 15 else (220, 200, 40), 3, i)) for i in range(30)]
    big = [RawFrame(f.index, f.pts_s, np.repeat(np.repeat(f.image, 4, 0), 4, 1)) for f in frames]  # 640x360
    params = SceneParams(min_scene_s=0)
    assert index_frames_ahead(iter(big), params).as_dict() == index_frames(big, params).as_dict()
