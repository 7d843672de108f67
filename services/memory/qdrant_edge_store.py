"""VectorStore over `qdrant-edge-py`: Qdrant's Rust engine in-process on one shard directory."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from services.memory.store import (
    FramePayload,
    IndexPoint,
    RangeFilter,
    ScoredFrame,
    StoreError,
    StoreUnavailable,
    VectorStore,
    check_point,
    check_specs,
    check_vector,
    scrolled_batch,
)

logger = logging.getLogger(__name__)

# Written by the engine next to `segments/` and `wal/`; its presence means a shard already lives here.
_CONFIG_FILE = "edge_config.json"
# Facet hits are capped by a limit; far more cameras than one edge site holds.
_MAX_CAMERAS = 100_000
# camera_id: `facet` (cameras()) needs a keyword index, and it speeds up the camera filter. start_s/end_s:
# the time-range filter; without these it scans every point (make bench-retrieve, 100k points, one camera
# and a time window: 184 ms per Retrieve without them, 45 ms with).
_FIELD_INDEXES = {
    "camera_id": qe.PayloadSchemaType.Keyword,
    "start_s": qe.PayloadSchemaType.Float,
    "end_s": qe.PayloadSchemaType.Float,
}


def _edge_filter(flt: RangeFilter) -> qe.Filter | None:
    """Camera match + span overlap with the asked range, as an engine filter (None = everything)."""
    must: list[qe.FieldCondition] = []
    if flt.camera_id is not None:
        must.append(qe.FieldCondition(key="camera_id", match=qe.MatchValue(flt.camera_id)))
    if flt.since_s is not None:
        must.append(qe.FieldCondition(key="end_s", range=qe.RangeFloat(gte=flt.since_s)))
    if flt.until_s is not None:
        must.append(qe.FieldCondition(key="start_s", range=qe.RangeFloat(lte=flt.until_s)))
    return qe.Filter(must=list(must)) if must else None


class QdrantEdgeStore(VectorStore):
    """One EdgeShard on `path`: opened at once if a shard is there, created by `ensure_collection` otherwise."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._shard: qe.EdgeShard | None = None
        self._specs: dict[str, int] | None = None
        if (self._path / _CONFIG_FILE).exists():
            self._shard = self._open(None)
            self._specs = self._persisted_specs()

    def _open(self, config: qe.EdgeConfig | None) -> qe.EdgeShard:
        """Load the shard on disk; the engine raises a bare Exception, told apart here by its message."""
        try:
            return qe.EdgeShard.load(str(self._path), config)
        except Exception as e:
            msg = str(e)
            # Another process (or store) holds the WAL lock: the shard exists but is not ours to use now.
            if "WAL" in msg or "WouldBlock" in msg:
                raise StoreUnavailable(f"qdrant-edge shard {self._path} is in use elsewhere: {msg}") from e
            raise StoreError(f"cannot open qdrant-edge shard {self._path}: {msg}") from e

    def _persisted_specs(self) -> dict[str, int]:
        """Vector names and sizes of the shard on disk (the engine has no getter for a loaded shard's config)."""
        try:
            raw = json.loads((self._path / _CONFIG_FILE).read_text())
            return {name: int(params["size"]) for name, params in raw["vectors"].items()}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StoreError(f"unreadable {_CONFIG_FILE} in {self._path}: {e!r}") from e

    def _require(self) -> tuple[qe.EdgeShard, dict[str, int]]:
        """The open shard and its specs, or a StoreError saying what to call first."""
        if self._shard is None or self._specs is None:
            raise StoreError(f"no qdrant-edge shard at {self._path}: call ensure_collection first")
        return self._shard, self._specs

    def ensure_collection(self, vector_specs: Mapping[str, int]) -> None:
        """Create the shard with cosine named vectors, or reopen it checking the engine agrees with the specs."""
        specs = check_specs(vector_specs)
        config = qe.EdgeConfig(
            vectors={name: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine) for name, dim in specs.items()}
        )
        if self._shard is not None:
            if self._specs != specs:
                raise StoreError(f"shard {self._path} holds vectors {self._specs}, asked for {specs}")
        elif (self._path / _CONFIG_FILE).exists():
            self._shard = self._open(config)
        else:
            try:
                self._shard = qe.EdgeShard.create(str(self._path), config)
            except Exception as e:
                raise StoreError(f"cannot create qdrant-edge shard {self._path}: {e}") from e
            logger.info("created qdrant-edge shard %s with vectors %s", self._path, specs)
        self._specs = specs
        self._ensure_field_indexes(self._shard)

    def _ensure_field_indexes(self, shard: qe.EdgeShard) -> None:
        """Payload indexes every filter uses; created on a shard that lacks them (older shards included)."""
        try:
            present = set(shard.info().payload_schema)
            for key, kind in _FIELD_INDEXES.items():
                if key not in present:
                    shard.update(qe.UpdateOperation.create_field_index(key, kind))
        except Exception as e:
            raise StoreError(f"cannot index payload fields of qdrant-edge shard {self._path}: {e}") from e

    def _specs_for_index(self) -> dict[str, int]:
        """The shard's named vectors."""
        return dict(self._require()[1])

    def _scan(self, vector_name: str, batch: int) -> Iterator[tuple[list[str], np.ndarray, list[FramePayload]]]:
        """Scroll every point with one vector and its payload, a page at a time."""
        shard, _ = self._require()
        offset = None
        while True:
            try:
                records, offset = shard.scroll(
                    qe.ScrollRequest(offset=offset, limit=batch, with_payload=True, with_vector=[vector_name])
                )
            except Exception as e:
                raise StoreError(f"qdrant-edge scroll of {self._path} failed: {e}") from e
            if records:
                yield scrolled_batch(records, vector_name)
            if offset is None:
                return

    def _upsert(self, points: Sequence[IndexPoint]) -> None:
        """Upsert, then flush so the points survive a crash as well as a clean close."""
        shard, specs = self._require()
        if not points:
            return
        batch = [qe.Point(p.point_id, dict(check_point(p, specs)), p.payload.to_dict()) for p in points]
        try:
            shard.update(qe.UpdateOperation.upsert_points(batch))
            shard.flush()
        except Exception as e:
            raise StoreError(f"qdrant-edge upsert of {len(batch)} points failed: {e}") from e

    def _query(self, vector_name: str, query: np.ndarray, flt: RangeFilter, limit: int) -> list[ScoredFrame]:
        """Exact nearest-neighbour query; exact because the softmax must see true cosines, not HNSW guesses."""
        shard, specs = self._require()
        vec = check_vector(vector_name, query, specs)
        if limit <= 0:
            return []
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(vec, using=vector_name),
            filter=_edge_filter(flt),
            with_payload=True,
            with_vector=False,
            params=qe.SearchParams(exact=True),
        )
        try:
            hits = shard.query(request)
        except Exception as e:
            raise StoreError(f"qdrant-edge query on {vector_name!r} failed: {e}") from e
        # The engine hands ids back as uuid.UUID even when they went in as str.
        return [ScoredFrame(str(h.id), FramePayload.from_dict(h.payload or {}), float(h.score)) for h in hits]

    def _scores(
        self, vector_name: str, query: np.ndarray, flt: RangeFilter, limit: int
    ) -> tuple[list[str], np.ndarray]:
        """Exact scores without payloads (the engine's scoring is ~7x faster without them at 100k points)."""
        shard, specs = self._require()
        vec = check_vector(vector_name, query, specs)
        if limit <= 0:
            return [], np.zeros(0, np.float64)
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(vec, using=vector_name),
            filter=_edge_filter(flt),
            with_payload=False,
            with_vector=False,
            params=qe.SearchParams(exact=True),
        )
        try:
            hits = shard.query(request)
        except Exception as e:
            raise StoreError(f"qdrant-edge query on {vector_name!r} failed: {e}") from e
        return [str(h.id) for h in hits], np.fromiter((h.score for h in hits), np.float64, len(hits))

    def payloads(self, point_ids: Sequence[str]) -> dict[str, FramePayload]:
        """Payloads by id."""
        shard, _ = self._require()
        if not point_ids:
            return {}
        try:
            records = shard.retrieve(list(point_ids), with_payload=True, with_vector=False)
        except Exception as e:
            raise StoreError(f"qdrant-edge retrieve of {len(point_ids)} points failed: {e}") from e
        return {str(r.id): FramePayload.from_dict(r.payload or {}) for r in records}

    def _count(self, flt: RangeFilter) -> int:
        """Exact count under a filter."""
        shard, _ = self._require()
        try:
            return int(shard.count(qe.CountRequest(exact=True, filter=_edge_filter(flt))))
        except Exception as e:
            raise StoreError(f"qdrant-edge count failed: {e}") from e

    def _cameras(self) -> list[str]:
        """Distinct camera ids, from a facet over the keyword-indexed `camera_id`."""
        shard, _ = self._require()
        try:
            hits = shard.facet(qe.FacetRequest(key="camera_id", limit=_MAX_CAMERAS, exact=True)).hits
        except Exception as e:
            raise StoreError(f"qdrant-edge facet on camera_id failed: {e}") from e
        return sorted(str(h.value) for h in hits)

    def close(self) -> None:
        """Flush and close the shard, releasing its WAL lock so the directory can be reopened."""
        if self._shard is None:
            return
        shard, self._shard = self._shard, None
        try:
            shard.flush()
        finally:
            shard.close()
