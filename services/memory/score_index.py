"""Exact cosine similarity of one named vector for every index frame, held in RAM: the softmax's support in ms.

Venus' softmax (eq. 5) needs the similarity of *every* index frame in the asked range, not a top-k. Qdrant
computes those exactly, but hands each one back as a Python object: at 100k points that hand-over, not the
arithmetic, was 93% of a Retrieve (make bench-retrieve: p95 567 ms). Truncating to the engine's top-M
would be fast, but at T = 0.05 it is not safe on a large memory: on bench-retrieve's 100k memory the
background beyond the top 16,384 still holds 0.5-1.7% of the mass, and the bound one can certify from
the M-th score is 1.4-4.6%. So the retrieval vector of every point is kept here as well, unit-normalised in
one float32 matrix with the camera and time span beside it, and a query is one masked matrix-vector
product: exact, every point, no Python objects per point.

Qdrant stays the durable store and the source of truth. This index is a cache of it: built at open by
scrolling the store (bench-retrieve: 100k points in 4.1 s, 1M in 52 s), extended on every upsert through the store, and
bounded by `max_bytes` so a memory too large for the configured RAM is refused with a clear message
instead of growing into an out-of-memory kill. Not thread-safe on its own: the memory serialises its
store calls under one lock (`Retriever.store_lock`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

# Per point beyond the vector: start/end (2 x 8 B), camera code (4 B), the id as a Python str in an object
# array (8 B pointer + ~85 B str) and its row in the id -> row dict (~100 B). Measured by bench-retrieve.
OVERHEAD_BYTES = 220


def matvec(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """vectors @ query in float32, by numpy's own SIMD loop.

    Scoring reads every vector once (100k x 384-d float32 = 154 MB): memory-bound. On this machine's
    OpenBLAS build `vectors @ query` (sgemv) took 16-17 ms at 100k, einsum 6-8 ms, and splitting the rows
    over two threads gained nothing for either (measured with bench-retrieve's memory; see docs/memory.md).
    """
    out = np.empty(vectors.shape[0], np.float32)
    np.einsum("ij,j->i", vectors, query, out=out)
    return out


class RowIds(Sequence[str]):
    """Point ids of some rows, looked up only when read: permuting 100k Python strings took 5 ms per query,
    and Retrieve reads the ids of the few dozen points it draws."""

    def __init__(self, ids: np.ndarray, rows: np.ndarray) -> None:
        self._ids = ids
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [str(x) for x in self._ids[self._rows[i]]]
        return str(self._ids[self._rows[i]])


class ScoreIndexFull(RuntimeError):
    """Adding the point would take the index past its configured size."""


@dataclass(frozen=True)
class CameraSpan:
    """What the memory holds for one camera: how many index frames, and the time its clusters cover."""

    camera_id: str
    index_frames: int
    earliest_s: float
    latest_s: float


def bytes_per_point(dim: int) -> int:
    """RAM one point takes in the index (float32 vector + metadata), for the size limit."""
    return 4 * dim + OVERHEAD_BYTES


def order_key(point_id: str) -> int:
    """A point's place in the index's canonical order: 64 bits of a hash of its id (any id string works)."""
    return int.from_bytes(hashlib.blake2b(point_id.encode(), digest_size=8).digest(), "big")


class ScoreIndex:
    """One named vector of every point, unit-normalised, with camera and span: exact cosine under a filter."""

    def __init__(self, vector_name: str, dim: int, max_bytes: int, capacity: int = 1024) -> None:
        if dim <= 0 or max_bytes <= 0:
            raise ValueError(f"dim and max_bytes must be > 0, got {dim}, {max_bytes}")
        self.vector_name = vector_name
        self.dim = dim
        self.max_bytes = max_bytes
        self.max_points = max_bytes // bytes_per_point(dim)
        cap = max(1, min(capacity, self.max_points))
        self._n = 0
        self._vecs = np.zeros((cap, dim), np.float32)
        self._cam = np.zeros(cap, np.int32)
        self._start = np.zeros(cap, np.float64)
        self._end = np.zeros(cap, np.float64)
        self._ids = np.empty(cap, dtype=object)
        self._keys = np.zeros(cap, np.uint64)
        # Rows in canonical order (by order_key), and their keys: answers come in this order so that the
        # same memory gives the same draws for a seed whatever order its points arrived in (a restart
        # rebuilds the index in the engine's scroll order, a live memory in arrival order).
        self._order = np.zeros(0, np.int64)
        self._sorted_keys = np.zeros(0, np.uint64)
        self._row: dict[str, int] = {}
        self._cam_code: dict[str, int] = {}
        self._cam_names: list[str] = []
        # Per camera code: [count, earliest start, latest end], kept as points arrive (Describe is O(cameras)).
        self._spans: list[list[float]] = []

    def __len__(self) -> int:
        """How many points the index holds."""
        return self._n

    def _grow(self, need: int) -> None:
        """Double the arrays (within max_points) so appends are amortised O(1)."""
        cap = self._vecs.shape[0]
        if need <= cap:
            return
        new = min(max(need, 2 * cap), self.max_points)
        for name in ("_vecs", "_cam", "_start", "_end", "_ids", "_keys"):
            old = getattr(self, name)
            grown = np.zeros((new, *old.shape[1:]), old.dtype) if old.dtype != object else np.empty(new, object)
            grown[: self._n] = old[: self._n]
            setattr(self, name, grown)

    def add(
        self,
        point_ids: Sequence[str],
        vectors: np.ndarray,
        camera_ids: Sequence[str],
        start_s: Sequence[float],
        end_s: Sequence[float],
    ) -> None:
        """Insert points, or replace the ones whose id is already here; raises ScoreIndexFull past max_points."""
        vecs = np.asarray(vectors, np.float32).reshape(len(point_ids), self.dim)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        # The store already refused zero and non-finite vectors; guard anyway so a row never turns NaN.
        vecs = vecs / np.where(norms > 0, norms, 1.0)
        new = self.check_room(point_ids)
        self._grow(self._n + new)
        recount: set[int] = set()
        added: list[int] = []
        for k, pid in enumerate(point_ids):
            cam = self._code(camera_ids[k])
            row = self._row.get(pid)
            if row is None:
                row = self._n
                self._n += 1
                self._row[pid] = row
                self._ids[row] = pid
                self._keys[row] = order_key(pid)
                added.append(row)
                span = self._spans[cam]
                span[0] += 1
                span[1] = min(span[1], float(start_s[k]))
                span[2] = max(span[2], float(end_s[k]))
            else:
                # A replaced point may move camera or span: recount both cameras once the rows are written.
                recount.update((int(self._cam[row]), cam))
            self._vecs[row] = vecs[k]
            self._cam[row] = cam
            self._start[row] = float(start_s[k])
            self._end[row] = float(end_s[k])
        for code in recount:
            self._recount(code)
        if added:
            self._insert_in_order(np.asarray(added, np.int64))

    def _insert_in_order(self, rows: np.ndarray) -> None:
        """Merge new rows into the canonical order: O(points) memmove per batch, no full re-sort."""
        keys = self._keys[rows]
        s = np.argsort(keys, kind="stable")
        pos = np.searchsorted(self._sorted_keys, keys[s], side="right")
        self._order = np.insert(self._order, pos, rows[s])
        self._sorted_keys = np.insert(self._sorted_keys, pos, keys[s])

    def check_room(self, point_ids: Sequence[str]) -> int:
        """How many of these ids are new; raises ScoreIndexFull if they would not fit in max_points."""
        new = len({pid for pid in point_ids if pid not in self._row})
        if self._n + new > self.max_points:
            raise ScoreIndexFull(
                f"the memory's score index is full: {self._n} + {new} index frames would exceed its "
                f"{self.max_points} ({self.max_bytes / 2**30:.2f} GiB at {bytes_per_point(self.dim)} B each); "
                "raise memory.retrieval.score_index_max_bytes (and the memory's RAM limit)"
            )
        return new

    def _code(self, camera_id: str) -> int:
        code = self._cam_code.get(camera_id)
        if code is None:
            code = len(self._cam_names)
            self._cam_code[camera_id] = code
            self._cam_names.append(camera_id)
            self._spans.append([0, float("inf"), float("-inf")])
        return code

    def _recount(self, code: int) -> None:
        mine = self._cam[: self._n] == code
        if mine.any():
            start, end = self._start[: self._n][mine], self._end[: self._n][mine]
            self._spans[code] = [int(mine.sum()), float(start.min()), float(end.max())]
        else:
            self._spans[code] = [0, float("inf"), float("-inf")]

    def _mask(self, camera_id: str | None, since_s: float | None, until_s: float | None) -> np.ndarray | None:
        """Rows in range as a boolean mask; None = every row (no filter)."""
        n = self._n
        mask: np.ndarray | None = None
        if camera_id is not None:
            code = self._cam_code.get(camera_id)
            mask = self._cam[:n] == (-1 if code is None else code)
        # The store's span-overlap semantics: end >= since and start <= until.
        if since_s is not None:
            m = self._end[:n] >= since_s
            mask = m if mask is None else mask & m
        if until_s is not None:
            m = self._start[:n] <= until_s
            mask = m if mask is None else mask & m
        return mask

    def scores(
        self,
        query: np.ndarray,
        camera_id: str | None = None,
        since_s: float | None = None,
        until_s: float | None = None,
    ) -> tuple[RowIds, np.ndarray]:
        """Ids and exact cosines (float64) of every point in range, in canonical (id-hash) order."""
        q = np.asarray(query, np.float32).reshape(self.dim)
        q = q / np.float32(max(float(np.linalg.norm(q)), 1e-30))
        mask = self._mask(camera_id, since_s, until_s)
        if mask is None:
            # Score in row order (one pass over contiguous memory), then permute the scores, not the vectors.
            sims = matvec(self._vecs[: self._n], q)
            return RowIds(self._ids, self._order), sims[self._order].astype(np.float64)
        rows = self._order[mask[self._order]]
        return RowIds(self._ids, rows), matvec(self._vecs[rows], q).astype(np.float64)

    def count(self, camera_id: str | None = None, since_s: float | None = None, until_s: float | None = None) -> int:
        """How many points are in range."""
        mask = self._mask(camera_id, since_s, until_s)
        return self._n if mask is None else int(mask.sum())

    def cameras(self) -> list[str]:
        """Cameras with at least one point, sorted."""
        return sorted(name for name, span in zip(self._cam_names, self._spans, strict=True) if span[0] > 0)

    def spans(self) -> list[CameraSpan]:
        """Per camera: index frames and the time covered, sorted by camera (O(cameras))."""
        return [
            CameraSpan(name, int(span[0]), float(span[1]), float(span[2]))
            for name, span in sorted(zip(self._cam_names, self._spans, strict=True))
            if span[0] > 0
        ]

    def nbytes(self) -> int:
        """Approximate RAM the points take (the figure `max_bytes` is checked against)."""
        return self._n * bytes_per_point(self.dim)
