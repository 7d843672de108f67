"""The in-RAM score index: exact cosines under the store's filter semantics, spans kept as points arrive."""

from __future__ import annotations

import numpy as np
import pytest

from services.memory.score_index import (
    CameraSpan,
    ScoreIndex,
    ScoreIndexFull,
    bytes_per_point,
    matvec,
    order_key,
)

DIM = 8


def _index(n: int = 50, seed: int = 0, max_bytes: int = 1 << 20) -> tuple[ScoreIndex, np.ndarray, list[tuple]]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    meta = [(f"p{i}", f"cam-{i % 3}", float(i * 10), float(i * 10 + 4)) for i in range(n)]
    index = ScoreIndex("text", DIM, max_bytes, capacity=4)  # a small start: growth is exercised
    for lo in range(0, n, 7):
        rows = meta[lo : lo + 7]
        ids, cams, starts, ends = (list(col) for col in zip(*rows, strict=True))
        index.add(ids, vecs[lo : lo + 7], cams, starts, ends)
    return index, vecs, meta


def _cos(vecs: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (vecs @ q) / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(q))


@pytest.mark.parametrize(
    ("camera", "since", "until"),
    [(None, None, None), ("cam-1", None, None), (None, 95.0, 204.0), ("cam-2", 52.0, None), (None, None, 3.0)],
)
def test_scores_are_exact_cosines_of_exactly_the_points_in_range(
    camera: str | None, since: float | None, until: float | None
) -> None:
    index, vecs, meta = _index()
    q = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
    ids, sims = index.scores(q, camera, since, until)
    # The store's semantics: the cluster's span overlaps the window (end >= since, start <= until).
    want = [
        i
        for i, (_, cam, start, end) in enumerate(meta)
        if (camera is None or cam == camera) and (since is None or end >= since) and (until is None or start <= until)
    ]
    # In canonical order (by the ids' hash), not arrival order.
    want.sort(key=lambda i: order_key(meta[i][0]))
    assert list(ids) == [meta[i][0] for i in want]
    np.testing.assert_allclose(sims, _cos(vecs[want], q), atol=1e-6)
    assert index.count(camera, since, until) == len(want)


def test_unknown_camera_matches_nothing() -> None:
    index, _, _ = _index()
    ids, sims = index.scores(np.ones(DIM, np.float32), "nowhere")
    assert len(ids) == 0 and len(sims) == 0


def test_spans_and_cameras_follow_inserts_and_replacements() -> None:
    index, _, _ = _index(n=6)
    assert index.cameras() == ["cam-0", "cam-1", "cam-2"]
    assert index.spans()[0] == CameraSpan("cam-0", 2, 0.0, 34.0)
    # Replacing p0 (cam-0) by a point on a new camera moves it: cam-0 keeps p3 alone, len stays 6.
    index.add(["p0"], np.ones((1, DIM), np.float32), ["cam-9"], [500.0], [510.0])
    assert len(index) == 6
    spans = {s.camera_id: s for s in index.spans()}
    assert spans["cam-0"] == CameraSpan("cam-0", 1, 30.0, 34.0)
    assert spans["cam-9"] == CameraSpan("cam-9", 1, 500.0, 510.0)
    ids, sims = index.scores(np.ones(DIM, np.float32), "cam-9")
    assert list(ids) == ["p0"] and sims[0] == pytest.approx(1.0)


def test_the_size_limit_refuses_before_anything_is_added() -> None:
    limit = 10 * bytes_per_point(DIM)
    index, _, _ = _index(n=10, max_bytes=limit)
    # Replacing existing ids needs no room.
    index.add(["p1"], np.ones((1, DIM), np.float32), ["cam-1"], [10.0], [14.0])
    with pytest.raises(ScoreIndexFull, match="score_index_max_bytes"):
        index.add(["new"], np.ones((1, DIM), np.float32), ["cam-1"], [0.0], [1.0])
    assert len(index) == 10 and index.nbytes() == limit


def test_bad_construction_is_refused() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        ScoreIndex("text", 0, 1 << 20)


def test_the_product_equals_blas() -> None:
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((5001, 16)).astype(np.float32)
    q = rng.standard_normal(16).astype(np.float32)
    np.testing.assert_allclose(matvec(vecs, q), vecs @ q, rtol=1e-5, atol=1e-5)


def test_row_ids_read_lazily_like_a_list() -> None:
    index, _, meta = _index(n=12)
    ids, _ = index.scores(np.ones(DIM, np.float32))
    want = sorted((m[0] for m in meta), key=order_key)
    assert len(ids) == 12 and list(ids) == want and ids[-1] == want[-1] and ids[2:5] == want[2:5]


def test_the_answer_order_does_not_depend_on_arrival_order() -> None:
    """A restart rebuilds the index in another order: the same seed must still draw the same frames."""
    index, vecs, meta = _index(n=40)
    shuffled = ScoreIndex("text", DIM, 1 << 20)
    perm = np.random.default_rng(5).permutation(40)
    for lo in range(0, 40, 3):
        part = perm[lo : lo + 3]
        shuffled.add(
            [meta[i][0] for i in part],
            vecs[part],
            [meta[i][1] for i in part],
            [meta[i][2] for i in part],
            [meta[i][3] for i in part],
        )
    q = np.ones(DIM, np.float32)
    for window in [(None, None, None), ("cam-1", 30.0, 300.0)]:
        a_ids, a_sims = index.scores(q, *window)
        b_ids, b_sims = shuffled.scores(q, *window)
        assert list(a_ids) == list(b_ids)
        np.testing.assert_array_equal(a_sims, b_sims)
