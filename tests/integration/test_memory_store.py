"""Both VectorStore adapters against the real engines: qdrant-edge in-process and qdrant-client local mode."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from services.memory.store import (
    FramePayload,
    IndexPoint,
    QdrantEdgeStoreConfig,
    QdrantServerStoreConfig,
    StoreError,
    StoreUnavailable,
    VectorStore,
    VectorStoreConfig,
    build_store,
)

SPECS = {"text": 4, "image": 3}
StoreFactory = Callable[[], VectorStore]


@pytest.fixture(params=["qdrant-edge", "qdrant-local"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory opening the same on-disk store again each call, so tests can close and reopen it."""
    if request.param == "qdrant-edge":
        config: QdrantEdgeStoreConfig | QdrantServerStoreConfig = QdrantEdgeStoreConfig(path=tmp_path / "shard")
    else:
        config = QdrantServerStoreConfig(path=tmp_path / "local", collection=f"test_{uuid.uuid4().hex[:8]}")
    opened: list[VectorStore] = []

    def factory() -> VectorStore:
        store = build_store(config)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def _point(camera: str, start_s: float, text: list[float], image: list[float], cluster: int = 0) -> IndexPoint:
    return IndexPoint(
        point_id=str(uuid.uuid4()),
        vectors={"text": np.array(text, dtype=np.float32), "image": np.array(image, dtype=np.float32)},
        payload=FramePayload(
            camera_id=camera,
            scene_id=cluster // 2,
            cluster_id=cluster,
            start_s=start_s,
            end_s=start_s + 5.0,
            index_frame=int(start_s * 2),
            frame_count=10,
            aux_text=f"car cam {camera}",
        ),
    )


def _seed(store: VectorStore) -> list[IndexPoint]:
    store.ensure_collection(SPECS)
    points = [
        _point("cam-a", 0.0, [1, 0, 0, 0], [0, 0, 1], cluster=0),
        _point("cam-a", 10.0, [1, 1, 0, 0], [0, 1, 0], cluster=1),
        _point("cam-a", 20.0, [0, 1, 0, 0], [1, 0, 0], cluster=2),
        _point("cam-b", 5.0, [1, 0.1, 0, 0], [1, 1, 0], cluster=0),
    ]
    store.upsert(points)
    return points


def test_search_ranks_nearest_first_with_cosine(open_store: StoreFactory) -> None:
    store = open_store()
    points = _seed(store)
    hits = store.search("text", np.array([2.0, 0, 0, 0]), limit=10)
    assert [h.point_id for h in hits][:2] == [points[0].point_id, points[3].point_id]
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    # Cosine, not dot: the query's length must not matter.
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    expected = {
        p.point_id: float(np.dot([1, 0, 0, 0], p.vectors["text"]) / np.linalg.norm(p.vectors["text"])) for p in points
    }
    for h in hits:
        assert h.score == pytest.approx(expected[h.point_id], abs=1e-5)
    assert hits[0].payload == points[0].payload
    assert len(store.search("text", np.array([1.0, 0, 0, 0]), limit=2)) == 2


def test_named_vectors_are_searched_separately(open_store: StoreFactory) -> None:
    store = open_store()
    points = _seed(store)
    assert store.search("image", np.array([1.0, 0, 0]), limit=1)[0].point_id == points[2].point_id
    assert store.search("text", np.array([0, 1.0, 0, 0]), limit=1)[0].point_id == points[2].point_id
    assert store.search("image", np.array([0, 0, 1.0]), limit=1)[0].point_id == points[0].point_id
    with pytest.raises(StoreError):
        store.search("clip", np.array([1.0, 0, 0]), limit=1)
    with pytest.raises(StoreError):
        store.search("text", np.array([1.0, 0, 0]), limit=1)
    with pytest.raises(StoreError):
        store.search("text", np.zeros(4), limit=1)


def test_camera_and_time_range_filters(open_store: StoreFactory) -> None:
    store = open_store()
    points = _seed(store)
    q = np.array([1.0, 0, 0, 0])
    assert {h.payload.camera_id for h in store.search("text", q, camera_id="cam-b", limit=10)} == {"cam-b"}
    # Spans [0,5], [10,15], [20,25] on cam-a: [12, 21] overlaps the last two.
    in_range = store.search("text", q, camera_id="cam-a", since_s=12.0, until_s=21.0, limit=10)
    assert {h.point_id for h in in_range} == {points[1].point_id, points[2].point_id}
    assert store.count(camera_id="cam-a", since_s=12.0, until_s=21.0) == 2
    assert store.count(since_s=16.0) == 1
    assert store.count(until_s=4.0) == 1
    assert store.count(camera_id="cam-z") == 0
    assert store.search("text", q, camera_id="cam-z", limit=10) == []
    with pytest.raises(StoreError):
        store.count(since_s=10.0, until_s=5.0)


def test_scores_in_range_covers_every_point(open_store: StoreFactory) -> None:
    store = open_store()
    _seed(store)
    extra = [_point("cam-a", 30.0 + i, [0, 0, 1, float(i)], [1, 0, 0], cluster=3 + i) for i in range(20)]
    store.upsert(extra)
    q = np.array([0, 0, 1.0, 0])
    scored = store.scores_in_range("text", q, camera_id="cam-a")
    assert len(scored) == store.count(camera_id="cam-a") == 23
    assert [s.score for s in scored] == sorted((s.score for s in scored), reverse=True)
    assert store.scores_in_range("text", q, camera_id="cam-a", since_s=100.0) == []
    # Retrieve's two steps: ids and scores of everything in range, then payloads of a few.
    ids, sims = store.similarities_in_range("text", q, camera_id="cam-a")
    assert ids == [s.point_id for s in scored]
    assert np.allclose(sims, [s.score for s in scored], atol=1e-6)
    chosen = [ids[0], ids[5], "00000000-0000-0000-0000-00000000dead"]
    got = store.payloads(chosen)
    assert set(got) == set(chosen[:2]) and got[ids[0]] == scored[0].payload
    assert store.similarities_in_range("text", q, camera_id="cam-a", since_s=100.0)[0] == []


def test_the_score_index_answers_as_the_engine_does(open_store: StoreFactory) -> None:
    store = open_store()
    points = _seed(store)
    store.upsert([_point("cam-a", 30.0 + i, [0, 0, 1, float(i)], [1, 0, 0], cluster=3 + i) for i in range(20)])
    q = np.array([0.3, 0, 1.0, 0.2])
    windows: list[dict[str, Any]] = [
        {},
        {"camera_id": "cam-a"},
        {"since_s": 12.0, "until_s": 33.0},
        {"camera_id": "cam-b", "until_s": 6.0},
    ]
    engine = [dict(zip(*store.similarities_in_range("text", q, **w), strict=True)) for w in windows]
    spans = store.camera_spans("text")
    index = store.keep_scores_in_memory("text", 1 << 20, batch=7)  # several scroll pages
    assert len(index) == 24
    for w, want in zip(windows, engine, strict=True):
        ids, sims = store.similarities_in_range("text", q, **w)
        got = dict(zip(ids, sims, strict=True))
        assert got.keys() == want.keys()
        assert all(abs(got[k] - want[k]) < 1e-6 for k in want)
        assert store.count(**w) == len(want)
    assert store.camera_spans("text") == spans
    assert [(s.camera_id, s.index_frames) for s in spans] == [("cam-a", 23), ("cam-b", 1)]
    # Upserts through the store reach the index: a replaced point moves camera, a new one is scored.
    moved = IndexPoint(points[3].point_id, points[3].vectors, FramePayload("cam-c", 0, 0, 40.0, 45.0, 0, 10))
    store.upsert([moved, _point("cam-c", 50.0, [0, 0, 1, 0], [1, 0, 0])])
    assert store.cameras() == ["cam-a", "cam-c"]
    assert len(store.similarities_in_range("text", q, camera_id="cam-c")[0]) == 2
    store.drop_score_index()
    assert store.count() == 25 and store.count(camera_id="cam-b") == 0


def test_a_memory_too_large_for_the_score_index_is_refused_with_the_figures(open_store: StoreFactory) -> None:
    store = open_store()
    _seed(store)
    with pytest.raises(StoreError, match=r"4 index frames.*score_index_max_bytes"):
        store.keep_scores_in_memory("text", 3 * 236)
    with pytest.raises(StoreError, match="unknown vector name"):
        store.keep_scores_in_memory("nope", 1 << 20)
    # A full index refuses the write before the engine takes it: store and index never disagree.
    store.keep_scores_in_memory("text", 5 * 236)
    store.upsert([_point("cam-a", 60.0, [1, 0, 0, 0], [0, 0, 1])])
    with pytest.raises(StoreError, match="score index is full"):
        store.upsert([_point("cam-a", 70.0, [1, 0, 0, 0], [0, 0, 1])])
    store.drop_score_index()
    assert store.count() == 5


def test_count_cameras_and_upsert_replaces(open_store: StoreFactory) -> None:
    store = open_store()
    points = _seed(store)
    assert store.count() == 4
    assert store.cameras() == ["cam-a", "cam-b"]
    moved = IndexPoint(points[0].point_id, points[0].vectors, FramePayload("cam-c", 0, 0, 0.0, 5.0, 0, 10))
    store.upsert([moved])
    assert store.count() == 4
    assert store.cameras() == ["cam-a", "cam-b", "cam-c"]


def test_memory_survives_close_and_reopen(open_store: StoreFactory) -> None:
    store = open_store()
    points = _seed(store)
    store.close()
    store.close()
    again = open_store()
    # Reads work straight away: the reopened store learns its vectors from what is on disk.
    assert again.count() == 4
    again.ensure_collection(SPECS)
    hit = again.search("text", np.array([1.0, 0, 0, 0]), camera_id="cam-a", limit=1)[0]
    assert hit.point_id == points[0].point_id
    assert hit.payload == points[0].payload
    with pytest.raises(StoreError):
        again.ensure_collection({"text": 8})


def test_before_ensure_collection_and_bad_points(open_store: StoreFactory) -> None:
    store = open_store()
    with pytest.raises(StoreError):
        store.count()
    store.ensure_collection(SPECS)
    good = _point("cam-a", 0.0, [1, 0, 0, 0], [0, 0, 1])
    with pytest.raises(StoreError):
        store.upsert([IndexPoint("not-a-uuid", good.vectors, good.payload)])
    with pytest.raises(StoreError):
        store.upsert([IndexPoint(good.point_id, {"text": good.vectors["text"]}, good.payload)])
    assert store.count() == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_fails_fast() -> None:
    config = QdrantServerStoreConfig(url=f"http://127.0.0.1:{_closed_port()}", timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        build_store(config)
    assert time.monotonic() - started < 2.0


def test_config_is_discriminated_and_strict(tmp_path: Path) -> None:
    adapter: TypeAdapter[QdrantEdgeStoreConfig | QdrantServerStoreConfig] = TypeAdapter(VectorStoreConfig)
    assert isinstance(adapter.validate_python({"type": "qdrant-edge", "path": str(tmp_path)}), QdrantEdgeStoreConfig)
    server = adapter.validate_python({"type": "qdrant", "url": "http://qdrant:6333"})
    assert isinstance(server, QdrantServerStoreConfig)
    with pytest.raises(ValidationError):
        adapter.validate_python({"type": "qdrant"})
    with pytest.raises(ValidationError):
        adapter.validate_python({"type": "qdrant-edge", "path": str(tmp_path), "url": "x"})


def test_qdrant_edge_indexes_the_filtered_fields_also_on_an_older_shard(tmp_path: Path) -> None:
    """The time-range filter needs float indexes on start_s/end_s; a shard made before them gets them on open."""
    import qdrant_edge as qe

    from services.memory.qdrant_edge_store import QdrantEdgeStore

    path = tmp_path / "old"
    config = qe.EdgeConfig(vectors={"text": qe.EdgeVectorParams(size=4, distance=qe.Distance.Cosine)})
    old = qe.EdgeShard.create(str(path), config)
    old.update(qe.UpdateOperation.create_field_index("camera_id", qe.PayloadSchemaType.Keyword))
    old.close()
    store = QdrantEdgeStore(path)
    try:
        store.ensure_collection({"text": 4})
        assert store._shard is not None
        assert {"camera_id", "start_s", "end_s"} <= set(store._shard.info().payload_schema)
    finally:
        store.close()
