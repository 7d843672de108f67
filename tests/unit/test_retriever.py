"""Retriever over a real Qdrant Edge shard and frame store, with a stand-in embedder (pure retrieval logic)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from services.common.memory_api import RetrieveInvalid, RetrieveNotFound
from services.memory.config import RetrievalConfig
from services.memory.frame_store import ClusterRecord, FrameStore, MemberFrame
from services.memory.qdrant_edge_store import QdrantEdgeStore
from services.memory.retriever import Mode, RetrieveQuery, Retriever
from services.memory.store import FramePayload, IndexPoint
from services.models.embedders.base import Embedder, EmbedderError, FrameEmbedding, check_query

WORDS = ["person", "car", "bicycle", "text"]


class KeywordEmbedder(Embedder):
    """A question or a cluster description -> its keywords' basis vectors (a stand-in with known geometry)."""

    @property
    def name(self) -> str:
        return "keyword-test"

    @property
    def vector_specs(self) -> dict[str, int]:
        return {"text": len(WORDS) + 1}

    @property
    def limitations(self) -> str:
        return "knows four words"

    def vec(self, text: str) -> np.ndarray:
        v = np.full(len(WORDS) + 1, 0.05, np.float32)
        for i, w in enumerate(WORDS):
            if w in text:
                v[i] = 1.0
        return v / np.linalg.norm(v)

    def embed_frames(self, images: Sequence[np.ndarray], aux_texts: Sequence[str]) -> list[FrameEmbedding]:
        return [FrameEmbedding({"text": self.vec(t)}, t) for t in aux_texts]

    def embed_query(self, text: str) -> dict[str, np.ndarray]:
        return {"text": self.vec(check_query(text))}


# (camera, start_s, description): 2 s clusters of 10 frames at 5 fps.
CLUSTERS = [
    ("cam0", 0.0, "car"),
    ("cam0", 2.0, "person"),
    ("cam0", 4.0, "person"),
    ("cam0", 6.0, "bicycle"),
    ("cam0", 8.0, "car"),
    ("cam1", 0.0, "text"),
    ("cam1", 2.0, "person"),
]


@pytest.fixture(params=["score-index", "engine"])
def retriever(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Retriever]:
    """Every test runs on both read paths: the memory's in-RAM score index and Qdrant Edge's own scoring."""
    emb = KeywordEmbedder()
    store = QdrantEdgeStore(tmp_path / "q")
    store.ensure_collection(emb.vector_specs)
    frames = FrameStore(tmp_path / "f")
    points = []
    for k, (cam, start, desc) in enumerate(CLUSTERS):
        members = [MemberFrame(start + i * 0.2, 0, i) for i in range(10)]
        pid = f"00000000-0000-0000-0000-{k:012d}"
        index_time = members[5].time_s
        for m in members:
            if not (cam == "cam0" and start == 4.0 and m.time_s != index_time):  # that cluster's raw frames expired
                frames.put_frame(cam, m.time_s, f"{cam}@{m.time_s:.1f}".encode())
        frames.put_cluster(ClusterRecord(pid, cam, members), f"index:{cam}@{index_time:.1f}".encode())
        payload = FramePayload(cam, 0, k, start, members[-1].time_s, 5, 10, desc, index_time, emb.name)
        points.append(IndexPoint(pid, {"text": emb.vec(desc)}, payload))
    store.upsert(points)
    if request.param == "score-index":
        store.keep_scores_in_memory("text", 1 << 20)
    r = Retriever(store, frames, emb, RetrievalConfig(temperature=0.05, theta=0.8, lam=0.25, max_frames_cap=8))
    yield r
    store.close()


def test_akr_prefers_relevant_clusters_and_stays_within_bounds(retriever: Retriever) -> None:
    res = retriever.retrieve(RetrieveQuery("a person", camera_id="cam0", seed=7))
    assert res.in_range == 5 and res.n_max == 8 and res.n_min == 2
    assert res.n_min <= res.draws <= res.n_max
    assert res.covered_probability >= 0.8 - 1e-9 or res.draws == res.n_max
    # Every keyframe lies inside the span of the cluster it came from, in time order.
    times = [f.time_s for f in res.frames]
    assert times == sorted(times)
    for f in res.frames:
        assert f.hit.payload.start_s - 1e-9 <= f.time_s <= f.hit.payload.end_s + 1e-9
    person = [f for f in res.frames if f.hit.payload.aux_text == "person"]
    assert len(person) >= len(res.frames) / 2
    assert res.embedder == "keyword-test" and res.limitations


def test_same_seed_same_keyframes(retriever: Retriever) -> None:
    a = retriever.retrieve(RetrieveQuery("person", seed=3))
    b = retriever.retrieve(RetrieveQuery("person", seed=3))
    assert [f.time_s for f in a.frames] == [f.time_s for f in b.frames]
    assert a.seed == 3
    assert retriever.retrieve(RetrieveQuery("person")).seed != 0


def test_top_k_returns_index_frames_of_the_most_similar(retriever: Retriever) -> None:
    res = retriever.retrieve(RetrieveQuery("person", mode=Mode.TOP_K, max_frames=2, camera_id="cam0"))
    assert math.isnan(res.covered_probability)
    assert [f.hit.payload.aux_text for f in res.frames] == ["person", "person"]
    assert all(f.from_index_frame for f in res.frames)
    assert [f.jpeg for f in res.frames] == [b"index:cam0@3.0", b"index:cam0@5.0"]


def test_expired_raw_frames_fall_back_to_the_index_frame(retriever: Retriever) -> None:
    res = retriever.retrieve(RetrieveQuery("person", mode=Mode.SAMPLE, max_frames=30, camera_id="cam0", seed=1))
    from_expired = [f for f in res.frames if f.hit.payload.start_s == 4.0]
    assert from_expired and res.frames_expired > 0
    # However many raw frames expired, the stand-in index frame appears once.
    assert len(from_expired) == 1 and from_expired[0].jpeg == b"index:cam0@5.0" and from_expired[0].from_index_frame
    ok = [f for f in res.frames if f.hit.payload.start_s == 2.0]
    assert all(f.jpeg == (b"index:" if f.from_index_frame else b"") + f"cam0@{f.time_s:.1f}".encode() for f in ok)


def test_filters(retriever: Retriever) -> None:
    res = retriever.retrieve(RetrieveQuery("person", camera_id="cam1", seed=1))
    assert {f.camera_id for f in res.frames} == {"cam1"}
    res = retriever.retrieve(RetrieveQuery("car", camera_id="cam0", since_s=7.0, until_s=20.0, seed=1))
    assert res.in_range == 2  # the bicycle cluster (6.0-7.8) overlaps 7.0; the car at 8.0
    assert all(f.time_s >= 6.0 for f in res.frames)
    assert not retriever.retrieve(RetrieveQuery("car", with_images=False)).frames[0].jpeg


@pytest.mark.parametrize(
    ("query", "error", "match"),
    [
        (RetrieveQuery("   "), RetrieveInvalid, "empty"),
        (RetrieveQuery("x" * 3000), RetrieveInvalid, "limit"),
        (RetrieveQuery("person", since_s=5, until_s=1), RetrieveInvalid, "inverted"),
        (RetrieveQuery("person", theta=1.5), RetrieveInvalid, "theta"),
        (RetrieveQuery("person", max_frames=10_000), RetrieveInvalid, "max_frames"),
        (RetrieveQuery("person", since_s=float("nan")), RetrieveInvalid, "finite"),
        (RetrieveQuery("person", camera_id="garage"), RetrieveNotFound, "unknown camera 'garage'.*cam0, cam1"),
        (RetrieveQuery("person", since_s=100.0), RetrieveNotFound, "nothing"),
    ],
)
def test_bad_requests(retriever: Retriever, query: RetrieveQuery, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        retriever.retrieve(query)


def test_embedder_errors_are_invalid_requests(retriever: Retriever, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(text: str) -> dict[str, np.ndarray]:
        raise EmbedderError("question too odd")

    monkeypatch.setattr(retriever.embedder, "embed_query", refuse)
    with pytest.raises(RetrieveInvalid, match="too odd"):
        retriever.retrieve(RetrieveQuery("person"))
