"""The vector-store interface of the edge memory: one Qdrant point per index frame, named vectors + payload.

Two adapters implement it, chosen by `VectorStoreConfig.type`:

* ``qdrant-edge``: Qdrant's engine in-process (`qdrant-edge-py`), one shard directory, the embedded default;
* ``qdrant``: `qdrant-client`, against a server (`url`) or in its pure-Python local mode (`path`).

Retrieval (Eq. 4-5) needs a similarity for *every* index frame in the asked range to build its softmax, but
the payloads of only the few it chooses. So the read path has two steps: `similarities_in_range` (cosine of
the query against all matching points, computed inside the engine, ids and scores only) and `payloads`
(for the chosen ids). Shipping 100k payloads through Python costs ~20x the scoring itself (bench-retrieve).
`scores_in_range` (everything, payloads included) stays for tools and small memories.

Time-range semantics: a point matches `[since_s, until_s]` when its cluster's span overlaps it, i.e.
``end_s >= since_s`` and ``start_s <= until_s``; either bound may be left open.
"""

from __future__ import annotations

import math
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


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

    @abstractmethod
    def ensure_collection(self, vector_specs: Mapping[str, int]) -> None:
        """Create the collection with these named vectors (name -> dim), or check an existing one matches."""

    @abstractmethod
    def upsert(self, points: Sequence[IndexPoint]) -> None:
        """Insert or replace points by id; durable once this returns."""

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
    ) -> tuple[list[str], np.ndarray]:
        """Ids and cosine similarities of every point in range, best first: the softmax's input, nothing more."""
        flt = RangeFilter(camera_id, since_s, until_s)
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
        return self._count(RangeFilter(camera_id, since_s, until_s))

    @abstractmethod
    def cameras(self) -> list[str]:
        """The distinct camera ids with at least one point, sorted."""

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
