"""The vector-store interface of the edge memory: one Qdrant point per index frame, named vectors + payload.

Two adapters implement it, chosen by `VectorStoreConfig.type`:

* ``qdrant-edge``: Qdrant's engine in-process (`qdrant-edge-py`), one shard directory, the embedded default;
* ``qdrant``: `qdrant-client`, against a server (`url`) or in its pure-Python local mode (`path`).

Retrieval (Eq. 4-5) needs a similarity for *every* index frame in the asked range to build its softmax, but
the payloads of only the few it chooses. So the read path has two steps: `similarities_in_range` (cosine of
the query against all matching points, ids and scores only) and `payloads` (for the chosen ids). The
memory calls `keep_scores_in_memory` at open: the retrieval vector of every point is then also held in a
`ScoreIndex` (services/memory/score_index.py, why there), which answers `similarities_in_range`, `count`,
`cameras` and `camera_spans` without a Python object per point; without it the engine answers them.
`scores_in_range` (everything, payloads included, from the engine) stays for tools and small memories.

Time-range semantics: a point matches `[since_s, until_s]` when its cluster's span overlaps it, i.e.
``end_s >= since_s`` and ``start_s <= until_s``; either bound may be left open.
"""

from __future__ import annotations

import math
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from services.memory.score_index import CameraSpan, ScoreIndex, ScoreIndexFull, bytes_per_point


class StoreError(RuntimeError):
    """The vector store refused an operation (bad vector name or size, no collection, corrupt data)."""


class StoreUnavailable(StoreError):
    """The vector store cannot be reached (server down, shard directory locked or unreadable)."""


@dataclass(frozen=True)
class FramePayload:
    """What the memory keeps next to an index frame's vectors: where and when its cluster lives."""

    camera_id: str
    scene_id: int
    cluster_id: int
    start_s: float
    end_s: float
    index_frame: int
    frame_count: int
    aux_text: str = ""
    # The index frame's place on the camera's time axis, and the embedder that made the vectors.
    index_time_s: float = 0.0
    embedder: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON payload stored in Qdrant."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FramePayload:
        """Rebuild from a stored payload; raises StoreError when a field is missing or mistyped."""
        try:
            return cls(
                camera_id=str(data["camera_id"]),
                scene_id=int(data["scene_id"]),
                cluster_id=int(data["cluster_id"]),
                start_s=float(data["start_s"]),
                end_s=float(data["end_s"]),
                index_frame=int(data["index_frame"]),
                frame_count=int(data["frame_count"]),
                aux_text=str(data.get("aux_text", "")),
                index_time_s=float(data.get("index_time_s", data["start_s"])),
                embedder=str(data.get("embedder", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"stored payload is not a frame payload ({e!r}): {dict(data)!r}") from e


@dataclass(frozen=True)
class IndexPoint:
    """One index frame to store: a UUID, its named vectors (name -> 1-D float array) and its payload."""

    point_id: str
    vectors: dict[str, np.ndarray]
    payload: FramePayload


@dataclass(frozen=True)
class ScoredFrame:
    """A stored index frame (without its vectors) and its cosine similarity to a query."""

    point_id: str
    payload: FramePayload
    score: float


@dataclass(frozen=True)
class RangeFilter:
    """Which points an operation sees: one camera (or all) and an optional, possibly open, time range."""

    camera_id: str | None = None
    since_s: float | None = None
    until_s: float | None = None

    def __post_init__(self) -> None:
        """Reject an empty range early: the engines would silently return nothing."""
        if self.since_s is not None and self.until_s is not None and self.since_s > self.until_s:
            raise StoreError(f"since_s ({self.since_s}) is after until_s ({self.until_s})")


class VectorStore(ABC):
    """One collection of index-frame points with named vectors; cosine similarity throughout."""

    # Set by `keep_scores_in_memory`; None = every read goes to the engine.
    _score_index: ScoreIndex | None = None

    @abstractmethod
    def ensure_collection(self, vector_specs: Mapping[str, int]) -> None:
        """Create the collection with these named vectors (name -> dim), or check an existing one matches."""

    @abstractmethod
    def _upsert(self, points: Sequence[IndexPoint]) -> None:
        """Insert or replace points by id in the engine, durably (adapters implement this)."""

    @abstractmethod
    def _scan(self, vector_name: str, batch: int) -> Iterator[tuple[list[str], np.ndarray, list[FramePayload]]]:
        """Every point's id, one named vector (rows) and payload, in batches (adapters implement this)."""

    @abstractmethod
    def _cameras(self) -> list[str]:
        """The engine's distinct camera ids, sorted (adapters implement this)."""

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        """Insert or replace points by id; durable once this returns (and in the score index, if kept)."""
        index = self._score_index
        if index is not None and points:
            # Refuse before the engine write: a point in Qdrant but not in the index would be unanswerable.
            try:
                index.check_room([p.point_id for p in points])
            except ScoreIndexFull as e:
                raise StoreError(str(e)) from e
        self._upsert(points)
        if index is not None and points:
            index.add(
                [p.point_id for p in points],
                np.stack([np.asarray(p.vectors[index.vector_name], np.float32) for p in points]),
                [p.payload.camera_id for p in points],
                [p.payload.start_s for p in points],
                [p.payload.end_s for p in points],
            )

    def keep_scores_in_memory(self, vector_name: str, max_bytes: int, batch: int = 2000) -> ScoreIndex:
        """Build the score index of `vector_name` from every stored point; StoreError if it would exceed max_bytes."""
        specs = self._specs_for_index()
        if vector_name not in specs:
            raise StoreError(f"unknown vector name {vector_name!r}; the collection has {sorted(specs)}")
        dim = specs[vector_name]
        n = self._count(RangeFilter())
        need = n * bytes_per_point(dim)
        if need > max_bytes:
            raise StoreError(
                f"the memory holds {n:,} index frames; scoring them exactly keeps their {vector_name!r} vectors "
                f"in RAM: {need / 2**30:.2f} GiB ({bytes_per_point(dim)} B each), over "
                f"memory.retrieval.score_index_max_bytes = {max_bytes / 2**30:.2f} GiB. Raise that limit (and "
                "the memory's RAM limit) or give this memory a smaller store"
            )
        index = ScoreIndex(vector_name, dim, max_bytes, capacity=max(n, 1024))
        for ids, vectors, payloads in self._scan(vector_name, batch):
            index.add(
                ids,
                vectors,
                [p.camera_id for p in payloads],
                [p.start_s for p in payloads],
                [p.end_s for p in payloads],
            )
        self._score_index = index
        return index

    def drop_score_index(self) -> None:
        """Answer every read from the engine again (the benchmark times both paths on one store)."""
        self._score_index = None

    @abstractmethod
    def _specs_for_index(self) -> dict[str, int]:
        """The collection's named vectors (name -> dim); StoreError before ensure_collection."""

    @abstractmethod
    def _query(self, vector_name: str, query: np.ndarray, flt: RangeFilter, limit: int) -> list[ScoredFrame]:
        """The engine's exact cosine search under a filter, best first (adapters implement this)."""

    @abstractmethod
    def _count(self, flt: RangeFilter) -> int:
        """The engine's exact count under a filter (adapters implement this)."""

    @abstractmethod
    def _scores(
        self, vector_name: str, query: np.ndarray, flt: RangeFilter, limit: int
    ) -> tuple[list[str], np.ndarray]:
        """Exact cosine search without payloads: point ids and scores, best first (adapters implement this)."""

    @abstractmethod
    def payloads(self, point_ids: Sequence[str]) -> dict[str, FramePayload]:
        """The payloads of these points (missing ids are left out)."""

    def similarities_in_range(
        self,
        vector_name: str,
        query: np.ndarray,
        *,
        camera_id: str | None = None,
        since_s: float | None = None,
        until_s: float | None = None,
    ) -> tuple[Sequence[str] | np.ndarray, np.ndarray]:
        """Ids and cosine similarities of every point in range (in no set order): the softmax's input, nothing more.

        From the score index when it holds `vector_name` (exact, O(points) numpy), else from the engine.
        """
        flt = RangeFilter(camera_id, since_s, until_s)
        index = self._score_index
        if index is not None and index.vector_name == vector_name:
            vec = np.asarray(check_vector(vector_name, query, self._specs_for_index()), np.float32)
            ids, sims = index.scores(vec, camera_id, since_s, until_s)
            return ids, sims
        return self._scores(vector_name, query, flt, self._count(flt))

    def search(
        self,
        vector_name: str,
        query: np.ndarray,
        *,
        camera_id: str | None = None,
        since_s: float | None = None,
        until_s: float | None = None,
        limit: int = 10,
    ) -> list[ScoredFrame]:
        """The `limit` points nearest to `query` on `vector_name`, best first, score = cosine similarity."""
        return self._query(vector_name, query, RangeFilter(camera_id, since_s, until_s), limit)

    def scores_in_range(
        self,
        vector_name: str,
        query: np.ndarray,
        *,
        camera_id: str | None = None,
        since_s: float | None = None,
        until_s: float | None = None,
    ) -> list[ScoredFrame]:
        """Cosine similarity of `query` to every point in range (exact, best first): the softmax's input.

        Counting first and querying with that limit keeps the vectors inside the engine.
        """
        flt = RangeFilter(camera_id, since_s, until_s)
        return self._query(vector_name, query, flt, self._count(flt))

    def count(self, *, camera_id: str | None = None, since_s: float | None = None, until_s: float | None = None) -> int:
        """How many points match the filter (exact)."""
        flt = RangeFilter(camera_id, since_s, until_s)
        if self._score_index is not None:
            return self._score_index.count(camera_id, since_s, until_s)
        return self._count(flt)

    def cameras(self) -> list[str]:
        """The distinct camera ids with at least one point, sorted."""
        if self._score_index is not None:
            return self._score_index.cameras()
        return self._cameras()

    def camera_spans(self, probe_vector: str) -> list[CameraSpan]:
        """Per camera: index frames and the time covered. O(cameras) from the score index, else a walk.

        Without the index the engine has no min/max aggregate: one pass over each camera's payloads
        (scored against a probe on `probe_vector`), O(points).
        """
        if self._score_index is not None:
            return self._score_index.spans()
        specs = self._specs_for_index()
        probe = np.ones(specs[probe_vector], np.float32)
        out = []
        for cam in self._cameras():
            hits = self.scores_in_range(probe_vector, probe, camera_id=cam)
            if hits:
                out.append(
                    CameraSpan(cam, len(hits), min(h.payload.start_s for h in hits), max(h.payload.end_s for h in hits))
                )
        return out

    @abstractmethod
    def close(self) -> None:
        """Flush and release the store (files, locks, connections); safe to call twice."""

    def __enter__(self) -> VectorStore:
        """Use as a context manager that closes on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving the `with` block."""
        self.close()


def check_specs(vector_specs: Mapping[str, int]) -> dict[str, int]:
    """Validate a name -> dim mapping (non-empty, positive dims) and copy it."""
    if not vector_specs:
        raise StoreError("vector_specs is empty: a collection needs at least one named vector")
    for name, dim in vector_specs.items():
        if not name or int(dim) <= 0:
            raise StoreError(f"bad vector spec {name!r}: {dim}")
    return {name: int(dim) for name, dim in vector_specs.items()}


def check_point(point: IndexPoint, specs: Mapping[str, int]) -> dict[str, list[float]]:
    """Validate a point against the collection's specs; return its vectors as plain float lists."""
    try:
        uuid.UUID(point.point_id)
    except ValueError as e:
        raise StoreError(f"point_id must be a UUID string, got {point.point_id!r}") from e
    if set(point.vectors) != set(specs):
        raise StoreError(f"point {point.point_id} has vectors {sorted(point.vectors)}, collection has {sorted(specs)}")
    return {name: check_vector(name, vec, specs) for name, vec in point.vectors.items()}


def check_vector(name: str, vector: np.ndarray, specs: Mapping[str, int]) -> list[float]:
    """Validate one named vector (known name, right size, finite, non-zero) and return it as a float list."""
    if name not in specs:
        raise StoreError(f"unknown vector name {name!r}; the collection has {sorted(specs)}")
    arr = np.asarray(vector, dtype=np.float32)
    if arr.ndim != 1 or arr.shape[0] != specs[name]:
        raise StoreError(f"vector {name!r} must have shape ({specs[name]},), got {arr.shape}")
    norm = float(np.linalg.norm(arr))
    # Cosine similarity is undefined for a zero vector and NaNs would poison the softmax downstream.
    if not math.isfinite(norm) or norm == 0.0:
        raise StoreError(f"vector {name!r} is zero or not finite")
    return [float(x) for x in arr]


def scrolled_batch(records: Sequence[Any], vector_name: str) -> tuple[list[str], np.ndarray, list[FramePayload]]:
    """A page of scrolled records (either engine's: `.id`, `.vector`, `.payload`) as ids, vectors and payloads."""
    vectors = []
    for r in records:
        named = r.vector
        if not isinstance(named, Mapping) or not isinstance(named.get(vector_name), Sequence):
            raise StoreError(f"stored point {r.id} has no dense vector {vector_name!r}")
        vectors.append(named[vector_name])
    ids = [str(r.id) for r in records]
    return ids, np.array(vectors, np.float32), [FramePayload.from_dict(r.payload or {}) for r in records]


class QdrantEdgeStoreConfig(BaseModel):
    """Qdrant's engine in-process (`qdrant-edge-py`) on a shard directory; reopens what is there."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["qdrant-edge"] = "qdrant-edge"
    path: Path


class QdrantServerStoreConfig(BaseModel):
    """`qdrant-client`: a Qdrant server at `url`, or its pure-Python local mode on `path` (tests, tools)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["qdrant"] = "qdrant"
    url: str | None = None
    path: Path | None = None
    collection: str = "vigil_index_frames"
    # Short, so a down server fails the start-up or the request instead of hanging the caller.
    timeout_s: float = Field(default=2.0, gt=0.0)
    # A server's API key (the Helm chart reads it from an existing Secret); never logged or printed.
    api_key: SecretStr | None = None

    @model_validator(mode="after")
    def _one_location(self) -> QdrantServerStoreConfig:
        """Exactly one of url and path says where the data lives."""
        if (self.url is None) == (self.path is None):
            raise ValueError("set exactly one of `url` (a server) or `path` (local mode)")
        return self


VectorStoreConfig = Annotated[QdrantEdgeStoreConfig | QdrantServerStoreConfig, Field(discriminator="type")]


def build_store(config: QdrantEdgeStoreConfig | QdrantServerStoreConfig) -> VectorStore:
    """Open the adapter named by `config.type` (imports its Qdrant library only then)."""
    if config.type == "qdrant-edge":
        from services.memory.qdrant_edge_store import QdrantEdgeStore

        return QdrantEdgeStore(config.path)
    from services.memory.qdrant_client_store import QdrantClientStore

    return QdrantClientStore(
        url=config.url,
        path=config.path,
        collection=config.collection,
        timeout_s=config.timeout_s,
        api_key=config.api_key.get_secret_value() if config.api_key is not None else None,
    )
