"""VectorStore over `qdrant-client`: a Qdrant server (`url`) or the client's pure-Python local mode (`path`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

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

_MAX_CAMERAS = 100_000
# Transport failures: the server is down, unreachable or too slow for the configured timeout.
_UNREACHABLE = (ResponseHandlingException, httpx.TransportError, ConnectionError, TimeoutError)


def _client_filter(flt: RangeFilter) -> qm.Filter | None:
    """Camera match + span overlap with the asked range (None = everything)."""
    must: list[qm.Condition] = []
    if flt.camera_id is not None:
        must.append(qm.FieldCondition(key="camera_id", match=qm.MatchValue(value=flt.camera_id)))
    if flt.since_s is not None:
        must.append(qm.FieldCondition(key="end_s", range=qm.Range(gte=flt.since_s)))
    if flt.until_s is not None:
        must.append(qm.FieldCondition(key="start_s", range=qm.Range(lte=flt.until_s)))
    return qm.Filter(must=must) if must else None


class QdrantClientStore(VectorStore):
    """One collection through qdrant-client; a server is probed at construction so a down one fails fast."""

    def __init__(
        self,
        *,
        url: str | None = None,
        path: Path | None = None,
        collection: str = "vigil_index_frames",
        timeout_s: float = 2.0,
        api_key: str | None = None,
    ) -> None:
        if (url is None) == (path is None):
            raise StoreError("set exactly one of `url` (a server) or `path` (local mode)")
        if api_key is not None and path is not None:
            raise StoreError("an api_key applies to a Qdrant server (`url`), not to local mode (`path`)")
        self._collection = collection
        self._local = path is not None
        self._where = str(path) if path is not None else str(url)
        self._specs: dict[str, int] | None = None
        try:
            if path is not None:
                self._client = QdrantClient(path=str(path))
            else:
                # No version probe: it is one more round trip and only warns; the probe below is what matters.
                # qdrant-client takes whole seconds, so round up rather than turn 0.5 s into no timeout.
                self._client = QdrantClient(
                    url=url, api_key=api_key, timeout=math.ceil(timeout_s), check_compatibility=False
                )
        except RuntimeError as e:
            # Local mode takes a file lock on `path`; a second opener gets a RuntimeError.
            raise StoreUnavailable(f"qdrant local storage {path} is in use elsewhere: {e}") from e
        try:
            self._specs = self._persisted_specs()
        except StoreError:
            self._client.close()
            raise

    def _persisted_specs(self) -> dict[str, int] | None:
        """Named vector sizes of the existing collection, or None; this is also the reachability probe."""
        try:
            if not self._client.collection_exists(self._collection):
                return None
            vectors = self._client.get_collection(self._collection).config.params.vectors
        except _UNREACHABLE as e:
            raise StoreUnavailable(f"qdrant at {self._where} is unreachable: {e}") from e
        except UnexpectedResponse as e:
            raise StoreError(f"qdrant at {self._where} answered {e.status_code}: {e}") from e
        if not isinstance(vectors, dict):
            raise StoreError(f"collection {self._collection} has an unnamed vector; expected named vectors")
        return {name: int(params.size) for name, params in vectors.items()}

    def _require(self) -> dict[str, int]:
        """The collection's specs, or a StoreError saying what to call first."""
        if self._specs is None:
            raise StoreError(f"no collection {self._collection} at {self._where}: call ensure_collection first")
        return self._specs

    def ensure_collection(self, vector_specs: Mapping[str, int]) -> None:
        """Create the collection with cosine named vectors, or check the existing one has the same ones."""
        specs = check_specs(vector_specs)
        if self._specs is not None:
            if self._specs != specs:
                raise StoreError(f"collection {self._collection} holds vectors {self._specs}, asked for {specs}")
            return
        try:
            self._client.create_collection(
                self._collection,
                vectors_config={
                    name: qm.VectorParams(size=dim, distance=qm.Distance.COSINE) for name, dim in specs.items()
                },
            )
            # Local mode ignores payload indexes (and warns), so only a server gets one.
            if not self._local:
                self._client.create_payload_index(self._collection, "camera_id", qm.PayloadSchemaType.KEYWORD)
                for key in ("start_s", "end_s"):
                    self._client.create_payload_index(self._collection, key, qm.PayloadSchemaType.FLOAT)
        except _UNREACHABLE as e:
            raise StoreUnavailable(f"qdrant at {self._where} is unreachable: {e}") from e
        except (UnexpectedResponse, ValueError) as e:
            raise StoreError(f"cannot create collection {self._collection}: {e}") from e
        logger.info("created qdrant collection %s at %s with vectors %s", self._collection, self._where, specs)
        self._specs = specs

    def _specs_for_index(self) -> dict[str, int]:
        """The collection's named vectors."""
        return dict(self._require())

    def _scan(self, vector_name: str, batch: int) -> Iterator[tuple[list[str], np.ndarray, list[FramePayload]]]:
        """Scroll every point with one vector and its payload."""
        self._require()
        offset = None
        while True:
            try:
                records, offset = self._client.scroll(
                    self._collection, offset=offset, limit=batch, with_payload=True, with_vectors=[vector_name]
                )
            except _UNREACHABLE as e:
                raise StoreUnavailable(f"qdrant at {self._where} is unreachable: {e}") from e
            except (UnexpectedResponse, ValueError) as e:
                raise StoreError(f"qdrant scroll of {self._collection} failed: {e}") from e
            if records:
                yield scrolled_batch(records, vector_name)
            if offset is None:
                return

    def _upsert(self, points: Sequence[IndexPoint]) -> None:
        """Upsert and wait for the write to be applied."""
        specs = self._require()
        if not points:
            return
        batch = [
            qm.PointStruct(id=p.point_id, vector=dict(check_point(p, specs)), payload=p.payload.to_dict())
            for p in points
        ]
        try:
            self._client.upsert(self._collection, points=batch, wait=True)
        except _UNREACHABLE as e:
            raise StoreUnavailable(f"qdrant at {self._where} is unreachable: {e}") from e
        except (UnexpectedResponse, ValueError) as e:
            raise StoreError(f"qdrant upsert of {len(batch)} points failed: {e}") from e

    def _query(self, vector_name: str, query: np.ndarray, flt: RangeFilter, limit: int) -> list[ScoredFrame]:
        """Nearest-neighbour query, exact on a server because the softmax must see true cosines."""
        vec = check_vector(vector_name, query, self._require())
        if limit <= 0:
            return []
        try:
            response = self._client.query_points(
                self._collection,
                query=vec,
                using=vector_name,
                query_filter=_client_filter(flt),
                limit=limit,
                with_payload=True,
                with_vectors=False,
                # Local mode is always exact and warns when given search params.
                search_params=None if self._local else qm.SearchParams(exact=True),
            )
        except _UNREACHABLE as e:
            raise StoreUnavailable(f"qdrant at {self._where} is unreachable: {e}") from e
        except (UnexpectedResponse, ValueError) as e:
            raise StoreError(f"qdrant query on {vector_name!r} failed: {e}") from e
        return [
            ScoredFrame(str(h.id), FramePayload.from_dict(h.payload or {}), float(h.score)) for h in response.points
        ]

    def _scores(
        self, vector_name: str, query: np.ndarray, flt: RangeFilter, limit: int
    ) -> tuple[list[str], np.ndarray]:
        """Exact scores without payloads."""
        vec = check_vector(vector_name, query, self._require())
        if limit <= 0:
            return [], np.zeros(0, np.float64)
        try:
            response = self._client.query_points(
                self._collection,
                query=vec,
                using=vector_name,
                query_filter=_client_filter(flt),
                limit=limit,
                with_payload=False,
                with_vectors=False,
                search_params=None if self._local else qm.SearchParams(exact=True),
            )
        except _UNREACHABLE as e:
            raise StoreUnavailable(f"qdrant at {self._where} is unreachable: {e}") from e
        except (UnexpectedResponse, ValueError) as e:
            raise StoreError(f"qdrant query on {vector_name!r} failed: {e}") from e
        points = response.points
        return [str(h.id) for h in points], np.fromiter((h.score for h in points), np.float64, len(points))

    def payloads(self, point_ids: Sequence[str]) -> dict[str, FramePayload]:
        """Payloads by id."""
        self._require()
        if not point_ids:
            return {}
        try:
            records = self._client.retrieve(self._collection, list(point_ids), with_payload=True, with_vectors=False)
        except _UNREACHABLE as e:
            raise StoreUnavailable(f"qdrant at {self._where} is unreachable: {e}") from e
        except (UnexpectedResponse, ValueError) as e:
            raise StoreError(f"qdrant retrieve of {len(point_ids)} points failed: {e}") from e
        return {str(r.id): FramePayload.from_dict(r.payload or {}) for r in records}

    def _count(self, flt: RangeFilter) -> int:
        """Exact count under a filter."""
        self._require()
        try:
            return int(self._client.count(self._collection, count_filter=_client_filter(flt), exact=True).count)
        except _UNREACHABLE as e:
            raise StoreUnavailable(f"qdrant at {self._where} is unreachable: {e}") from e
        except UnexpectedResponse as e:
            raise StoreError(f"qdrant count failed: {e}") from e

    def _cameras(self) -> list[str]:
        """Distinct camera ids, from a facet over `camera_id`."""
        self._require()
        try:
            hits = self._client.facet(self._collection, "camera_id", limit=_MAX_CAMERAS, exact=True).hits
        except _UNREACHABLE as e:
            raise StoreUnavailable(f"qdrant at {self._where} is unreachable: {e}") from e
        except UnexpectedResponse as e:
            raise StoreError(f"qdrant facet on camera_id failed: {e}") from e
        return sorted(str(h.value) for h in hits)

    def close(self) -> None:
        """Close the client; in local mode this persists and releases the storage lock."""
        self._client.close()
