"""make bench-retrieve: Retrieve latency at 1k-100k memories, and AKR vs greedy top-K at the same frame budget.

Prints JSON lines (a short summary goes to stderr at the end).

Latency ("retrieve-latency"): a synthetic memory grows in one store per adapter (Qdrant Edge to 1k, 10k,
100k index points; qdrant-client local mode to 1k, 10k, 20k) and `Retriever.retrieve` (AKR, default
RetrievalConfig) is timed end to end at each size, with no filter and with one camera + a time window.
Vectors are the default embedder's named vectors ("text" 384-d, "image" 1280-d): a few hundred random
unit centres plus noise, L2-normalised, from a fixed seed. Payloads spread over 8 cameras, one cluster
every 8 s per camera (27.8 h per camera at 100k), 2-8 member frames each; every point has its cluster
record in a FrameStore. Questions go through a deterministic stand-in embedder so the figures isolate the
memory's own path; `with_images=False` (no JPEG reads). The real aux-minilm question embedding is timed
on its own ("query-embed"). Points are inserted in batches of 1000 through the store's `upsert` (Qdrant
Edge flushes each batch); `EdgeShard.optimize()` is not called: it builds HNSW graphs that the exact
scoring Retrieve needs never uses. A cell stops early (at least 10 queries) once it has run
--cell-budget-s seconds; "queries" says how many were timed.

AKR vs top-K ("retrieve-akr-vs-topk"): one camera, 2000 index frames over 4.4 h, and three question
topics whose 48 relevant index frames sit in 1, 3 or 8 separate time regions (Venus Fig. 9's concentrated
vs dispersed cases). Each index frame's text vector is built to have a chosen cosine with each topic:
background ~ N(0.20, 0.06); relevant frames peak per region at U(0.50, 0.70), falling by 0.15 to the
region's edges, jitter N(0, 0.02). The same Retriever picks frames (AKR at several T, fixed sampling,
greedy top-K with k = N_max and with k = AKR's mean frame count) over an in-memory exact-cosine
VectorStore (Qdrant's exact scores are the same cosines, and the engine does not change the choice).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import compare, emit, machine_info, percentiles, ratio
from services.memory.config import RetrievalConfig
from services.memory.frame_store import ClusterRecord, FrameStore, MemberFrame, camera_dir_name
from services.memory.retriever import Mode, RetrieveQuery, Retriever, RetrieveResult
from services.memory.store import (
    FramePayload,
    IndexPoint,
    QdrantEdgeStoreConfig,
    QdrantServerStoreConfig,
    RangeFilter,
    ScoredFrame,
    VectorStore,
    build_store,
    check_point,
    check_specs,
    check_vector,
)
from services.models.embedders.aux_backend import IMAGE_DIM, IMAGE_VECTOR, TEXT_DIM, TEXT_VECTOR
from services.models.embedders.base import Embedder, EmbedderError, FrameEmbedding, check_query

SPECS = {TEXT_VECTOR: TEXT_DIM, IMAGE_VECTOR: IMAGE_DIM}
STAND_IN = "bench-stand-in"
# Points are generated (and upserted) in blocks of this size; point i's data depends on i alone.
GEN_BATCH = 1000
CAMERAS = 8
PERIOD_S = 8.0
N_CENTRES = 256
# Noise norm relative to a unit centre: a point's cosine to its centre is about 1/sqrt(2).
POINT_NOISE = 1.0
QUERY_NOISE = 1.0
# 2026-01-01T00:00:00Z: capture times of member frames.
EPOCH_NS = 1_767_225_600 * 10**9
_ID_NAMESPACE = uuid.UUID("5f0c3a52-8a1e-4b7c-9a55-0d7e4a4f2b10")

QUESTIONS = [
    f"{what} {where}?"
    for what in (
        "when did a person fall",
        "was a red car parked",
        "did anyone leave a bag",
        "how many people crossed",
        "when did the truck arrive",
        "was there a fight",
    )
    for where in ("near the entrance", "at the loading bay", "on the crosswalk", "in the parking lot", "by the gate")
]


def rnd(x: float, places: int = 3) -> float:
    """Round for output."""
    return round(float(x), places)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, float32."""
    x = np.asarray(x, dtype=np.float32)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def parse_sizes(text: str) -> list[int]:
    """'1k,10k,1M,100000' -> [1000, 10000, 100000, 1000000] (sorted, unique); 'none' -> [] (skip that store)."""
    if text.strip().lower() == "none":
        return []
    out = set()
    for part in text.split(","):
        part = part.strip().lower()
        if part:
            scale = {"k": 1000, "m": 1_000_000}.get(part[-1], 1)
            out.add(int(float(part[:-1] if scale > 1 else part) * scale))
    if not out or min(out) <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive integers, got {text!r}")
    return sorted(out)


# ---------------------------------------------------------------------------------------------------------------
# Synthetic memory for the latency runs


def point_id(seed: int, i: int) -> str:
    """Point i's UUID (stable across runs and sizes, so one set of cluster records serves every store)."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{seed}:{i}"))


def members_of(i: int) -> int:
    """2-8 raw frames (1 fps) in cluster i: varied, fixed by position."""
    return 2 + (i * 5 + i // 7) % 7


def payload_for(i: int, cameras: int = CAMERAS) -> FramePayload:
    """Point i: camera i % cameras, the (i // cameras)-th cluster on that camera's axis, one every PERIOD_S."""
    slot = i // cameras
    start = slot * PERIOD_S
    k = members_of(i)
    return FramePayload(
        camera_id=f"cam-{i % cameras}",
        scene_id=slot // 10,
        cluster_id=slot,
        start_s=start,
        end_s=start + k - 1,
        index_frame=int(start) + k // 2,
        frame_count=k,
        index_time_s=start + k // 2,
        embedder=STAND_IN,
    )


def cluster_record(pid: str, payload: FramePayload) -> ClusterRecord:
    """The cluster layer's record for a point: its member frames at 1 fps from start_s."""
    base = int(payload.start_s)
    members = [
        MemberFrame(payload.start_s + j, EPOCH_NS + int((payload.start_s + j) * 1e9), base + j)
        for j in range(payload.frame_count)
    ]
    return ClusterRecord(pid, payload.camera_id, members)


def centres(seed: int) -> dict[str, np.ndarray]:
    """The unit centres the memory's vectors cluster around, per named vector."""
    rng = np.random.default_rng([seed, 0])
    return {name: unit_rows(rng.standard_normal((N_CENTRES, dim))) for name, dim in SPECS.items()}


def memory_block(
    seed: int, block: int, cents: Mapping[str, np.ndarray], names: Sequence[str] = tuple(SPECS)
) -> dict[str, np.ndarray]:
    """Named vectors of points [block * GEN_BATCH, (block + 1) * GEN_BATCH): centre + noise, unit length.

    `names` picks which vectors to make; noise is drawn in SPECS order up to the last one asked for, so a
    vector is the same whichever others are made (the 1M store skips the image vector, drawn last).
    """
    rng = np.random.default_rng([seed, 1, block])
    which = rng.integers(0, N_CENTRES, GEN_BATCH)
    last = max(k for k, name in enumerate(SPECS) if name in names)
    out = {}
    for name, dim in list(SPECS.items())[: last + 1]:
        noise = rng.standard_normal((GEN_BATCH, dim), dtype=np.float32) * np.float32(POINT_NOISE / math.sqrt(dim))
        if name in names:
            out[name] = unit_rows(cents[name][which] + noise)
    return out


def memory_points(
    seed: int, lo: int, hi: int, cents: Mapping[str, np.ndarray], names: Sequence[str] = tuple(SPECS)
) -> Iterator[list[IndexPoint]]:
    """Points [lo, hi) in upsert batches aligned on GEN_BATCH, with the named vectors `names`."""
    for block in range(lo // GEN_BATCH, (hi + GEN_BATCH - 1) // GEN_BATCH):
        vecs = memory_block(seed, block, cents, names)
        first = block * GEN_BATCH
        rows = range(max(lo, first), min(hi, first + GEN_BATCH))
        yield [
            IndexPoint(point_id(seed, i), {name: v[i - first] for name, v in vecs.items()}, payload_for(i))
            for i in rows
        ]


def write_cluster_records(root: Path, records: Sequence[ClusterRecord]) -> None:
    """FrameStore's cluster layout (clusters/<camera>/<point_id>.json) without its per-file fsync.

    `FrameStore.put_cluster` fsyncs every file, which at 100k records is minutes of disk waits that say
    nothing about retrieval; the files are the same bytes, read back by `FrameStore.get_cluster`.
    """
    made: set[Path] = set()
    for rec in records:
        d = root / "clusters" / camera_dir_name(rec.camera_id)
        if d not in made:
            d.mkdir(parents=True, exist_ok=True)
            made.add(d)
        (d / f"{rec.point_id}.json").write_bytes(rec.to_json())


# ---------------------------------------------------------------------------------------------------------------
# Stand-ins: an embedder with known geometry and an exact in-memory store


class StandInEmbedder(Embedder):
    """Questions -> one of `directions` plus noise, deterministic by text: keeps the model out of the figure."""

    def __init__(
        self,
        directions: np.ndarray,
        noise: float,
        seed: int,
        routes: Mapping[str, int] | None = None,
    ) -> None:
        self._directions = unit_rows(directions)
        self._noise = noise
        self._seed = seed
        self._routes = dict(routes or {})

    @property
    def name(self) -> str:
        """Model identity."""
        return STAND_IN

    @property
    def vector_specs(self) -> dict[str, int]:
        """The default embedder's named vectors."""
        return dict(SPECS)

    @property
    def limitations(self) -> str:
        """What it cannot understand."""
        return "synthetic: maps a question to a fixed direction plus noise"

    def embed_frames(self, images: Sequence[np.ndarray], aux_texts: Sequence[str]) -> list[FrameEmbedding]:
        """Not used: the bench writes frame vectors directly."""
        raise EmbedderError("the bench's stand-in embeds questions only")

    def embed_query(self, text: str) -> dict[str, np.ndarray]:
        """A routed (or hashed) direction plus Gaussian noise of norm ~`noise`, unit length."""
        question = check_query(text)
        h = zlib.crc32(question.encode())
        k = self._routes.get(question, h % len(self._directions))
        rng = np.random.default_rng([self._seed, 2, h])
        dim = self._directions.shape[1]
        noise = rng.standard_normal(dim) * (self._noise / math.sqrt(dim))
        return {TEXT_VECTOR: unit_rows(self._directions[k] + noise)}


class ArrayStore(VectorStore):
    """Exact cosine over numpy arrays in memory: the AKR comparison's memory (and a fast test double)."""

    def __init__(self) -> None:
        self._specs: dict[str, int] | None = None
        self._ids: list[str] = []
        self._payloads: list[FramePayload] = []
        self._vectors: dict[str, list[np.ndarray]] = {}
        self._matrix: dict[str, np.ndarray] = {}
        self._meta: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._row: dict[str, int] = {}

    def ensure_collection(self, vector_specs: Mapping[str, int]) -> None:
        """Remember the named vectors."""
        self._specs = check_specs(vector_specs)
        self._vectors = {name: [] for name in self._specs}

    def _specs_for_index(self) -> dict[str, int]:
        """The named vectors."""
        assert self._specs is not None, "call ensure_collection first"
        return dict(self._specs)

    def _scan(self, vector_name: str, batch: int) -> Iterator[tuple[list[str], np.ndarray, list[FramePayload]]]:
        """Every point in insertion order."""
        for lo in range(0, len(self._ids), batch):
            yield (
                self._ids[lo : lo + batch],
                self._matrix[vector_name][lo : lo + batch],
                self._payloads[lo : lo + batch],
            )

    def _upsert(self, points: Sequence[IndexPoint]) -> None:
        """Append points (the bench never replaces one)."""
        assert self._specs is not None, "call ensure_collection first"
        for p in points:
            check_point(p, self._specs)
            self._ids.append(p.point_id)
            self._payloads.append(p.payload)
            for name, vec in p.vectors.items():
                self._vectors[name].append(np.asarray(vec, dtype=np.float32))
        self._matrix = {name: unit_rows(np.stack(v)) for name, v in self._vectors.items() if v}
        self._meta = (
            np.array([pl.camera_id for pl in self._payloads]),
            np.array([pl.start_s for pl in self._payloads]),
            np.array([pl.end_s for pl in self._payloads]),
        )

    def _mask(self, flt: RangeFilter) -> np.ndarray:
        if self._meta is None:
            return np.zeros(0, dtype=bool)
        cams, start, end = self._meta
        mask = np.ones(len(self._ids), dtype=bool)
        if flt.camera_id is not None:
            mask &= cams == flt.camera_id
        if flt.since_s is not None:
            mask &= end >= flt.since_s
        if flt.until_s is not None:
            mask &= start <= flt.until_s
        return mask

    def _query(self, vector_name: str, query: np.ndarray, flt: RangeFilter, limit: int) -> list[ScoredFrame]:
        """Exact cosine, best first."""
        assert self._specs is not None, "call ensure_collection first"
        q = unit_rows(np.asarray(check_vector(vector_name, query, self._specs)))
        mask = self._mask(flt)
        if limit <= 0 or not mask.any():
            return []
        matrix = self._matrix[vector_name]
        idx = np.arange(len(self._ids)) if mask.all() else np.flatnonzero(mask)
        sims = (matrix if mask.all() else matrix[idx]) @ q
        order = np.argsort(-sims, kind="stable")[:limit]
        rows, scores = idx[order].tolist(), sims[order].tolist()
        return [ScoredFrame(self._ids[i], self._payloads[i], s) for i, s in zip(rows, scores, strict=True)]

    def _scores(
        self, vector_name: str, query: np.ndarray, flt: RangeFilter, limit: int
    ) -> tuple[list[str], np.ndarray]:
        """Exact cosine without payloads, best first."""
        hits = self._query(vector_name, query, flt, limit)
        return [h.point_id for h in hits], np.array([h.score for h in hits], dtype=np.float64)

    def payloads(self, point_ids: Sequence[str]) -> dict[str, FramePayload]:
        """Payloads by id."""
        if len(self._row) != len(self._ids):
            self._row = {pid: i for i, pid in enumerate(self._ids)}
        return {pid: self._payloads[self._row[pid]] for pid in point_ids if pid in self._row}

    def _count(self, flt: RangeFilter) -> int:
        """Exact count."""
        return int(self._mask(flt).sum())

    def _cameras(self) -> list[str]:
        """Distinct camera ids."""
        return sorted({p.camera_id for p in self._payloads})

    def close(self) -> None:
        """Nothing to release."""


# ---------------------------------------------------------------------------------------------------------------
# Latency at scale


@dataclass(frozen=True)
class Sample:
    """One timed Retrieve."""

    total_ms: float
    embed_ms: float
    search_ms: float
    sample_ms: float
    in_range: int
    frames: int


def latency_queries(n: int, count: int, filtered: bool, cameras: int = CAMERAS) -> list[RetrieveQuery]:
    """`count` AKR questions; filtered: one camera and a window of 1/8 of its time axis, placed at varying times."""
    axis_s = math.ceil(n / cameras) * PERIOD_S
    window = axis_s / 8.0
    out = []
    for j in range(count):
        question = f"{QUESTIONS[j % len(QUESTIONS)]} #{j}"
        if not filtered:
            out.append(RetrieveQuery(question, seed=j + 1, with_images=False))
            continue
        since = ((j * 0.618034) % 1.0) * (axis_s - window)
        out.append(
            RetrieveQuery(
                question,
                camera_id=f"cam-{j % cameras}",
                since_s=since,
                until_s=since + window,
                seed=j + 1,
                with_images=False,
            )
        )
    return out


def time_cell(retriever: Retriever, queries: Sequence[RetrieveQuery], budget_s: float) -> list[Sample]:
    """Run queries (after one untimed warm-up) until done, or the budget is spent with at least 10 timed."""
    retriever.retrieve(queries[0])
    out: list[Sample] = []
    t_start = time.perf_counter()
    for q in queries:
        t = time.perf_counter()
        res = retriever.retrieve(q)
        total = (time.perf_counter() - t) * 1e3
        tm = res.timings_ms
        out.append(Sample(total, tm["embed_ms"], tm["search_ms"], tm["sample_ms"], res.in_range, len(res.frames)))
        if len(out) >= 10 and time.perf_counter() - t_start > budget_s:
            break
    return out


def cell_record(store: str, n: int, filt: str, samples: Sequence[Sample], build_s: float) -> dict[str, Any]:
    """The JSON line of one (store, size, filter) cell."""
    totals = [s.total_ms for s in samples]
    search = [s.search_ms for s in samples]
    rest = [s.total_ms - s.search_ms - s.embed_ms for s in samples]
    p50, p95 = percentiles(totals)
    s50, s95 = percentiles(search)
    r50, r95 = percentiles(rest)
    return {
        "bench": "retrieve-latency",
        "store": store,
        "n": n,
        "filter": filt,
        "mode": "akr",
        "with_images": False,
        "queries": len(samples),
        "in_range_mean": rnd(float(np.mean([s.in_range for s in samples])), 1),
        "frames_mean": rnd(float(np.mean([s.frames for s in samples])), 2),
        "p50_ms": rnd(p50, 2),
        "p95_ms": rnd(p95, 2),
        "mean_ms": rnd(float(np.mean(totals)), 2),
        "store_p50_ms": rnd(s50, 2),
        "store_p95_ms": rnd(s95, 2),
        "rest_p50_ms": rnd(r50, 2),
        "rest_p95_ms": rnd(r95, 2),
        "select_p50_ms": rnd(percentiles([s.sample_ms for s in samples])[0], 2),
        "stand_in_embed_p50_ms": rnd(percentiles([s.embed_ms for s in samples])[0], 3),
        "store_share": rnd(sum(search) / sum(totals)),
        "build_s": rnd(build_s, 1),
    }


def edge_breakdown(
    store: VectorStore, n: int, filt: str, queries: Sequence[RetrieveQuery], emb: Embedder, store_name: str
) -> dict[str, Any]:
    """Split the store's read path into count, engine query (with / without payloads) and Python.

    Retrieve uses `similarities_in_range` (ids and scores only, payloads fetched for the chosen
    points); `scores_in_range` (every payload) is timed beside it to show what that saves. Reaches
    into the adapter's shard to time the engine alone.
    """
    import qdrant_edge as qe

    from services.memory.qdrant_edge_store import QdrantEdgeStore, _edge_filter

    assert isinstance(store, QdrantEdgeStore) and store._shard is not None
    shard = store._shard
    rows: dict[str, list[float]] = {
        "count": [],
        "engine_payload": [],
        "engine_scores_only": [],
        "adapter": [],
        "adapter_scores_only": [],
    }
    for q in queries:
        vec = emb.embed_query(q.question)[TEXT_VECTOR]
        flt = RangeFilter(q.camera_id, q.since_s, q.until_s)
        t = time.perf_counter()
        limit = store.count(camera_id=q.camera_id, since_s=q.since_s, until_s=q.until_s)
        rows["count"].append((time.perf_counter() - t) * 1e3)
        floats = [float(x) for x in vec]
        for key, with_payload in (("engine_payload", True), ("engine_scores_only", False)):
            request = qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(floats, using=TEXT_VECTOR),
                filter=_edge_filter(flt),
                with_payload=with_payload,
                with_vector=False,
                params=qe.SearchParams(exact=True),
            )
            t = time.perf_counter()
            shard.query(request)
            rows[key].append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        store.scores_in_range(TEXT_VECTOR, vec, camera_id=q.camera_id, since_s=q.since_s, until_s=q.until_s)
        rows["adapter"].append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        store.similarities_in_range(TEXT_VECTOR, vec, camera_id=q.camera_id, since_s=q.since_s, until_s=q.until_s)
        rows["adapter_scores_only"].append((time.perf_counter() - t) * 1e3)
    med = {k: float(np.median(v)) for k, v in rows.items()}
    return {
        "bench": "retrieve-latency-breakdown",
        "store": store_name,
        "n": n,
        "filter": filt,
        "queries": len(queries),
        "count_p50_ms": rnd(med["count"], 2),
        "engine_query_with_payload_p50_ms": rnd(med["engine_payload"], 2),
        "engine_query_scores_only_p50_ms": rnd(med["engine_scores_only"], 2),
        "scores_in_range_p50_ms": rnd(med["adapter"], 2),
        "similarities_in_range_p50_ms": rnd(med["adapter_scores_only"], 2),
        # What is left once the engine's count and query are taken out: hits -> Python objects.
        "python_conversion_p50_ms": rnd(max(0.0, med["adapter"] - med["count"] - med["engine_payload"]), 2),
    }


# Issue 11's targets for Retrieve end to end, p95 in ms, by (index frames, filter).
TARGETS_P95_MS: dict[tuple[int, str], float] = {
    (100_000, "none"): 25.0,
    (100_000, "camera+range"): 10.0,
    (1_000_000, "camera+range"): 100.0,
}
# The engine path walks every point per query; past this many unfiltered it is minutes a cell, so it is skipped.
ENGINE_UNFILTERED_MAX_N = 100_000


def time_describe(store: VectorStore, repeats: int = 3) -> float:
    """Best-of wall time of `camera_spans` (Describe's per-camera counts and spans), ms."""
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        store.camera_spans(TEXT_VECTOR)
        best = min(best, (time.perf_counter() - t) * 1e3)
    return best


def bench_store(
    kind: str,
    sizes: Sequence[int],
    args: argparse.Namespace,
    work: Path,
    frames: FrameStore,
    specs: Mapping[str, int] = SPECS,
) -> list[dict[str, Any]]:
    """Grow one store through `sizes`, timing Retrieve at each; returns the latency records.

    Qdrant Edge is timed on both read paths at each size, side by side: "engine" (Qdrant scores every
    point and hands each back; the path before the score index) and "score-index" (the memory's in-RAM
    index, services/memory/score_index.py, built from the store at that size as the memory does at open).
    qdrant-client is timed on the engine path only (the reference for the engine's own speed). `specs`:
    the named vectors the store holds (the 1M store holds only the retrieval vector; see main).
    """
    cents = centres(args.seed)
    emb = StandInEmbedder(cents[TEXT_VECTOR], QUERY_NOISE, args.seed)
    path = work / kind
    edge = kind.startswith("qdrant-edge")
    config = QdrantEdgeStoreConfig(path=path) if edge else QdrantServerStoreConfig(path=path)
    store = build_store(config)
    records: list[dict[str, Any]] = []
    paths = ["engine", "score-index"] if edge else ["engine"]
    try:
        store.ensure_collection(specs)
        retriever = Retriever(store, frames, emb, RetrievalConfig())
        grown, build_s = 0, 0.0
        for n in sizes:
            store.drop_score_index()
            for batch in memory_points(args.seed, grown, n, cents, tuple(specs)):
                t = time.perf_counter()
                store.upsert(batch)
                build_s += time.perf_counter() - t
            grown = n
            emit(
                {
                    "bench": "retrieve-build",
                    "store": kind,
                    "n": n,
                    "upsert_batch": GEN_BATCH,
                    "build_s": rnd(build_s, 2),
                    "points_per_s": rnd(n / build_s, 0),
                    "vectors": dict(specs),
                }
            )
            for read_path in paths:
                extra: dict[str, Any] = {}
                if read_path == "score-index":
                    t = time.perf_counter()
                    index = store.keep_scores_in_memory(TEXT_VECTOR, RetrievalConfig().score_index_max_bytes)
                    extra = {
                        "index_build_s": rnd(time.perf_counter() - t, 2),
                        "index_mib": rnd(index.nbytes() / 2**20, 1),
                    }
                describe_ms = None
                if read_path == "score-index" or n <= ENGINE_UNFILTERED_MAX_N:
                    describe_ms = rnd(time_describe(store, 1 if read_path == "engine" else 3), 3)
                for filt, filtered in (("none", False), ("camera+range", True)):
                    if read_path == "engine" and not filtered and n > ENGINE_UNFILTERED_MAX_N:
                        continue
                    queries = latency_queries(n, args.queries, filtered)
                    samples = time_cell(retriever, queries, args.cell_budget_s)
                    rec = cell_record(kind, n, filt, samples, build_s)
                    rec.update(path=read_path, describe_ms=describe_ms, **extra)
                    records.append(rec)
                    emit(rec)
                    if edge and read_path == "engine" and args.breakdown_queries > 0:
                        emit(edge_breakdown(store, n, filt, queries[: args.breakdown_queries], emb, kind))
    finally:
        store.close()
    return records


def target_records(edge: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (n, filter): the score index against the engine path (its speed-up) and against issue 11's target."""
    engine = {(r["n"], r["filter"]): r for r in edge if r["path"] == "engine"}
    out = []
    for r in edge:
        if r["path"] != "score-index":
            continue
        key = (r["n"], r["filter"])
        before = engine.get(key)
        target = TARGETS_P95_MS.get(key)
        rec = {
            "bench": "retrieve-target",
            "store": r["store"],
            "n": r["n"],
            "filter": r["filter"],
            "p95_ms": r["p95_ms"],
            "engine_p95_ms": None if before is None else before["p95_ms"],
            "speedup_p95_vs_engine": None if before is None else ratio(before["p95_ms"], r["p95_ms"], 1),
            "describe_ms": r["describe_ms"],
            "engine_describe_ms": None if before is None else before["describe_ms"],
            "target_p95_ms": target,
            "p95_over_target": None if target is None else ratio(r["p95_ms"], target, 2),
            "meets_target": None if target is None else r["p95_ms"] <= target,
        }
        emit(rec)
        out.append(rec)
    return out


def bench_query_embedding(count: int) -> dict[str, Any]:
    """Load the real default embedder (aux-minilm, no OCR) once and time `embed_query` on `count` questions."""
    from services.models.embedders.base import AuxMiniLMEmbedderConfig, build_embedder

    t = time.perf_counter()
    emb = build_embedder(AuxMiniLMEmbedderConfig(ocr=False))
    load_s = time.perf_counter() - t
    emb.embed_query(QUESTIONS[0])
    times = []
    for j in range(count):
        t = time.perf_counter()
        emb.embed_query(QUESTIONS[j % len(QUESTIONS)])
        times.append((time.perf_counter() - t) * 1e3)
    p50, p95 = percentiles(times)
    return {
        "bench": "query-embed",
        "embedder": emb.name,
        "vector": TEXT_VECTOR,
        "queries": count,
        "load_s": rnd(load_s, 2),
        "p50_ms": rnd(p50, 2),
        "p95_ms": rnd(p95, 2),
    }


# ---------------------------------------------------------------------------------------------------------------
# AKR vs top-K at the same budget


@dataclass(frozen=True)
class Case:
    """A question topic whose relevant index frames lie in `regions` separate time regions."""

    name: str
    regions: int
    # Where the regions sit: evenly spread, shifted by this share of the axis (keeps topics apart).
    offset: float


CASES = (Case("concentrated-1", 1, 0.0), Case("dispersed-3", 3, 0.06), Case("dispersed-8", 8, 0.025))
BACKGROUND = (0.20, 0.06)
PEAK = (0.50, 0.70)
EDGE_DROP = 0.15
JITTER = 0.02
TOPIC_QUERY_NOISE = 0.2


@dataclass
class AkrMemory:
    """One camera's index frames with text vectors of known cosine to each case's topic direction."""

    ids: list[str]
    payloads: list[FramePayload]
    text: np.ndarray
    topics: np.ndarray
    # case name -> [lo, hi) index-frame ranges of its relevant regions
    regions: dict[str, list[tuple[int, int]]]
    target: np.ndarray

    def region_times(self, case: str) -> list[tuple[float, float]]:
        """The case's relevant regions on the time axis: first cluster's start to last cluster's end."""
        return [(self.payloads[lo].start_s, self.payloads[hi - 1].end_s) for lo, hi in self.regions[case]]

    def relevant_ids(self, case: str) -> set[str]:
        """Point ids of the case's relevant index frames."""
        return {self.ids[i] for lo, hi in self.regions[case] for i in range(lo, hi)}


def place_regions(n: int, relevant: int, cases: Sequence[Case], gap: int = 4) -> dict[str, list[tuple[int, int]]]:
    """Each case's regions of `relevant // regions` frames, evenly spread, shifted right past any taken slots."""
    taken = np.zeros(n, dtype=bool)
    out: dict[str, list[tuple[int, int]]] = {}
    for case in cases:
        size = relevant // case.regions
        spans = []
        for k in range(case.regions):
            lo = round((k + 0.5) * n / case.regions + case.offset * n) - size // 2
            lo = max(0, min(lo, n - size))
            while taken[max(0, lo - gap) : min(n, lo + size + gap)].any():
                lo += 1
                if lo + size > n:
                    raise ValueError(f"no room for {case.name}'s regions in {n} index frames")
            taken[lo : lo + size] = True
            spans.append((lo, lo + size))
        out[case.name] = sorted(spans)
    return out


def akr_memory(seed: int, n: int = 2000, relevant: int = 48, cases: Sequence[Case] = CASES) -> AkrMemory:
    """Build the memory: target cosines per (topic, frame), then vectors that realise them exactly."""
    rng = np.random.default_rng([seed, 3])
    regions = place_regions(n, relevant, cases)
    target = np.clip(rng.normal(*BACKGROUND, size=(len(cases), n)), -0.1, 0.40)
    for c, case in enumerate(cases):
        for lo, hi in regions[case.name]:
            peak = rng.uniform(*PEAK)
            x = (np.arange(hi - lo) + 0.5) / (hi - lo) * 2.0 - 1.0
            target[c, lo:hi] = np.clip(peak - EDGE_DROP * np.abs(x) + rng.normal(0.0, JITTER, hi - lo), 0.0, 0.78)
    # Orthonormal topic directions; each frame = its target cosines along them + a unit remainder orthogonal to all.
    topics_t, _ = np.linalg.qr(rng.standard_normal((TEXT_DIM, len(cases))))
    topics = topics_t.T
    rest = rng.standard_normal((n, TEXT_DIM))
    rest -= (rest @ topics.T) @ topics
    rest /= np.linalg.norm(rest, axis=1, keepdims=True)
    scale = np.sqrt(1.0 - (target**2).sum(axis=0))
    text = target.T @ topics + scale[:, None] * rest
    payloads = [payload_for(i, cameras=1) for i in range(n)]
    ids = [point_id(seed + 1, i) for i in range(n)]
    return AkrMemory(ids, payloads, text.astype(np.float32), topics.astype(np.float32), regions, target)


def coverage(times: Sequence[float], regions: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    """Temporal coverage of keyframe times over relevant regions.

    Returns (region share: regions with at least one keyframe; span share: sum over regions of the time
    between their first and last keyframe, over the regions' total length; precision: keyframes inside a region).
    """
    if not regions:
        raise ValueError("no relevant regions")
    hit = 0
    spread = 0.0
    inside = 0
    for lo, hi in regions:
        ts = [t for t in times if lo <= t <= hi]
        inside += len(ts)
        if ts:
            hit += 1
            spread += max(ts) - min(ts)
    total = sum(hi - lo for lo, hi in regions)
    return hit / len(regions), (spread / total if total > 0 else 0.0), (inside / len(times) if times else 0.0)


@dataclass(frozen=True)
class Method:
    """A way of choosing frames, as Retrieve's overrides."""

    name: str
    mode: Mode
    temperature: float = 0.0
    max_frames: int = 0


def run_method(
    retriever: Retriever, mem: AkrMemory, case: str, method: Method, questions: Sequence[str]
) -> dict[str, Any]:
    """Mean figures of one method on one case over the questions (seed q + 1 for question q)."""
    regions = mem.region_times(case)
    relevant = mem.relevant_ids(case)
    rows = []
    for j, question in enumerate(questions):
        res: RetrieveResult = retriever.retrieve(
            RetrieveQuery(
                question,
                mode=method.mode,
                temperature=method.temperature,
                max_frames=method.max_frames,
                seed=j + 1,
                with_images=False,
            )
        )
        times = [f.time_s for f in res.frames]
        region_share, span_share, precision = coverage(times, regions)
        rows.append(
            (
                len(res.frames),
                res.clusters_chosen,
                res.draws,
                region_share,
                span_share,
                precision,
                len({f.hit.point_id for f in res.frames} & relevant) / len(relevant),
                float(np.mean([f.hit.score for f in res.frames])),
                res.covered_probability,
                res.n_max,
            )
        )
    a = np.array(rows, dtype=np.float64)
    mean = a.mean(axis=0)
    return {
        "bench": "retrieve-akr-vs-topk",
        "case": case,
        "method": method.name,
        "mode": method.mode.value,
        "temperature": method.temperature or retriever.config.temperature,
        # N_max for the samplers, k for top-K.
        "budget": int(a[0, 9]),
        "queries": len(questions),
        "frames_mean": rnd(mean[0], 2),
        "frames_p95": rnd(percentiles(a[:, 0], [95])[0], 1),
        "clusters_mean": rnd(mean[1], 2),
        "draws_mean": rnd(mean[2], 2),
        "region_coverage": rnd(mean[3]),
        "span_share": rnd(mean[4]),
        "precision": rnd(mean[5]),
        "relevant_cluster_recall": rnd(mean[6]),
        "similarity_mean": rnd(mean[7]),
        "covered_probability_mean": None if method.mode is Mode.TOP_K else rnd(mean[8]),
        "at_n_max_share": rnd(float((a[:, 2] >= a[:, 9]).mean())) if method.mode is Mode.AKR else None,
    }


def relevant_mass(
    store: VectorStore, emb: Embedder, mem: AkrMemory, case: str, questions: Sequence[str], temps: Sequence[float]
) -> dict[str, float]:
    """Mean softmax probability on the case's relevant index frames, per temperature (why AKR stops or not)."""
    from services.memory.sampling import softmax

    relevant = mem.relevant_ids(case)
    sums = dict.fromkeys(temps, 0.0)
    for question in questions:
        hits = store.scores_in_range(TEXT_VECTOR, emb.embed_query(question)[TEXT_VECTOR])
        sims = np.array([h.score for h in hits])
        rel = np.array([h.point_id in relevant for h in hits])
        for temp in temps:
            sums[temp] += float(softmax(sims, temp)[rel].sum())
    return {f"T={temp:g}": rnd(total / len(questions)) for temp, total in sums.items()}


def bench_akr(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """AKR vs fixed sampling vs greedy top-K on the three cases; returns the method records."""
    mem = akr_memory(args.seed, n=args.akr_frames, relevant=args.akr_relevant)
    config = RetrievalConfig()
    questions = {
        case.name: [f"what happens with topic {case.name}? #{j}" for j in range(args.akr_queries)] for case in CASES
    }
    routes = {q: c for c, case in enumerate(CASES) for q in questions[case.name]}
    emb = StandInEmbedder(mem.topics, TOPIC_QUERY_NOISE, args.seed, routes)
    store = ArrayStore()
    store.ensure_collection(SPECS)
    rng = np.random.default_rng([args.seed, 4])
    images = unit_rows(rng.standard_normal((len(mem.ids), IMAGE_DIM)))
    store.upsert(
        [
            IndexPoint(pid, {TEXT_VECTOR: mem.text[i], IMAGE_VECTOR: images[i]}, mem.payloads[i])
            for i, pid in enumerate(mem.ids)
        ]
    )
    frames = FrameStore(work / "akr-frames")
    write_cluster_records(frames.root, [cluster_record(pid, pl) for pid, pl in zip(mem.ids, mem.payloads, strict=True)])
    retriever = Retriever(store, frames, emb, config)
    n_max = config.n_max()
    temps = sorted({config.temperature, *args.akr_temperatures})
    emit(
        {
            "bench": "retrieve-akr-vs-topk",
            "setup": {
                "index_frames": len(mem.ids),
                "camera_axis_s": mem.payloads[-1].end_s,
                "cluster_period_s": PERIOD_S,
                "members_per_cluster": "2-8 at 1 fps",
                "relevant_index_frames_per_case": args.akr_relevant,
                "regions": {case.name: mem.region_times(case.name) for case in CASES},
                "cosine_background": {"mean": BACKGROUND[0], "sd": BACKGROUND[1]},
                "cosine_relevant_region_peak": {"uniform": list(PEAK)},
                "cosine_drop_to_region_edge": EDGE_DROP,
                "cosine_jitter_sd": JITTER,
                "question_noise": TOPIC_QUERY_NOISE,
                "store": "in-memory exact cosine (ArrayStore)",
                "selection": "services.memory.retriever.Retriever, with_images=False",
                "retrieval_config": config.model_dump(),
                "n_max": n_max,
                "n_min": math.ceil(config.lam * n_max),
                "queries_per_case": args.akr_queries,
                "seeds": f"query j uses seed j+1 (same across methods); data seed {args.seed}",
                "coverage": (
                    "region_coverage: share of relevant regions with >= 1 keyframe; span_share: per region, last minus "
                    "first keyframe time, summed, over the regions' total length; precision: keyframes inside a region"
                ),
            },
        }
    )
    records: list[dict[str, Any]] = []
    for case in CASES:
        qs = questions[case.name]
        rows = [run_method(retriever, mem, case.name, Method("akr", Mode.AKR, temp), qs) for temp in temps]
        rows.append(run_method(retriever, mem, case.name, Method("sample-fixed", Mode.SAMPLE), qs))
        rows.append(run_method(retriever, mem, case.name, Method("top-k-n_max", Mode.TOP_K, 0.0, n_max), qs))
        # Greedy top-K at each AKR variant's mean frame count: the same uplink budget in frames.
        budgets = sorted({max(1, round(r["frames_mean"])) for r in rows[: len(temps)]} - {n_max})
        for k in budgets:
            rows.append(run_method(retriever, mem, case.name, Method(f"top-k-{k}", Mode.TOP_K, 0.0, k), qs))
        for row in rows:
            emit(row)
        records.extend(rows)
        # The memory's own read path (the in-RAM score index) against the exact engine scoring above: the same
        # softmax over the same scores in another order, so coverage must agree up to sampling noise.
        store.keep_scores_in_memory(TEXT_VECTOR, config.score_index_max_bytes)
        indexed = run_method(retriever, mem, case.name, Method("akr", Mode.AKR, config.temperature), qs)
        store.drop_score_index()
        exact = rows[temps.index(config.temperature)]
        emit(
            {
                "bench": "retrieve-akr-score-index",
                "case": case.name,
                "temperature": config.temperature,
                "queries": len(qs),
                **{
                    f"{fig}_{path}": row[fig]
                    for fig in ("region_coverage", "span_share", "precision", "covered_probability_mean", "frames_mean")
                    for path, row in (("engine", exact), ("score_index", indexed))
                },
                "region_coverage_ratio": ratio(indexed["region_coverage"], exact["region_coverage"]),
                "omitted_probability_mass": 0.0,
            }
        )
        topk_at = {r["budget"]: r for r in rows if r["mode"] == Mode.TOP_K.value}
        mass = relevant_mass(store, emb, mem, case.name, qs[:50], temps)
        for r in rows[: len(temps)]:
            k = max(1, round(r["frames_mean"]))
            topk = topk_at[k]
            emit(
                {
                    "bench": "retrieve-akr-vs-topk-ratio",
                    "case": case.name,
                    "temperature": r["temperature"],
                    "budget_frames": k,
                    "akr_frames_mean": r["frames_mean"],
                    "relevant_probability_mass": mass[f"T={r['temperature']:g}"],
                    "region_coverage_akr": r["region_coverage"],
                    "region_coverage_topk": topk["region_coverage"],
                    "span_share_akr": r["span_share"],
                    "span_share_topk": topk["span_share"],
                    "precision_akr": r["precision"],
                    "precision_topk": topk["precision"],
                    "similarity_akr_over_topk": rnd(r["similarity_mean"] / topk["similarity_mean"]),
                }
            )
    return records


# ---------------------------------------------------------------------------------------------------------------


# Ratio field -> the latency record's figure it divides.
RATIO_FIGURES = {
    "client_over_edge_p50": "p50_ms",
    "client_over_edge_p95": "p95_ms",
    "client_over_edge_store_p50": "store_p50_ms",
    "client_over_edge_build": "build_s",
}


def ratio_records(edge: Sequence[dict[str, Any]], client: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Print qdrant-client local mode over Qdrant Edge (ours) at the sizes both ran; return the records."""
    by_key = {(r["n"], r["filter"]): r for r in edge if r["path"] == "engine"}
    out = []
    for c in client:
        e = by_key.get((c["n"], c["filter"]))
        if e is None:
            continue
        out.append(
            compare(
                "retrieve-latency-ratio",
                {key: e[fig] for key, fig in RATIO_FIGURES.items()},
                {key: c[fig] for key, fig in RATIO_FIGURES.items()},
                places=2,
                # The record reads as the reference's slowdown: client time over edge time.
                inverse=True,
                n=c["n"],
                filter=c["filter"],
                reference="qdrant-client local mode",
            )
        )
    return out


def summary(
    lat: Sequence[dict[str, Any]], akr: Sequence[dict[str, Any]], embed: dict[str, Any] | None, wall_s: float
) -> str:
    """A few lines for a person."""
    lines = ["bench-retrieve summary (ms, Retrieve end to end with a stand-in question embedder, no JPEG reads):"]
    for r in lat:
        lines.append(
            f"  {r['store']:<21} {r['path']:<11} n={r['n']:>7} {r['filter']:<12}"
            f" p50 {r['p50_ms']:>8.1f}  p95 {r['p95_ms']:>8.1f}"
            f"  store {r['store_share'] * 100:4.0f}%  ({r['queries']} q, {r['in_range_mean']:.0f} in range)"
        )
    if embed:
        lines.append(
            f"  real question embedding ({embed['embedder']}): p50 {embed['p50_ms']} ms, p95 {embed['p95_ms']} ms"
        )
    for r in akr:
        lines.append(
            f"  {r['case']:<15} {r['method']:<18} T={r['temperature']:<5g} frames {r['frames_mean']:5.1f}"
            f"  regions {r['region_coverage']:.2f}  span {r['span_share']:.2f}  precision {r['precision']:.2f}"
        )
    lines.append(f"  wall {wall_s:.0f} s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run both parts and print JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sizes", type=parse_sizes, default=None, help="Qdrant Edge sizes (default 1k,10k,100k)")
    ap.add_argument("--client-sizes", type=parse_sizes, default=None, help="qdrant-client sizes (default 1k,10k,20k)")
    ap.add_argument(
        "--large-sizes",
        type=parse_sizes,
        default=None,
        help="Qdrant Edge sizes built with the retrieval vector only (default 1M; 'none' skips)",
    )
    ap.add_argument("--queries", type=int, default=None, help="queries per latency cell (default 50)")
    ap.add_argument("--cell-budget-s", type=float, default=30.0, help="stop a cell after this long (>= 10 queries)")
    ap.add_argument("--breakdown-queries", type=int, default=3, help="Qdrant Edge engine/Python split, 0 = skip")
    ap.add_argument("--embed-questions", type=int, default=None, help="real embedder questions (default 30, 0 = skip)")
    ap.add_argument("--akr-frames", type=int, default=None, help="index frames of the AKR memory (default 2000)")
    ap.add_argument("--akr-relevant", type=int, default=48, help="relevant index frames per case")
    ap.add_argument("--akr-queries", type=int, default=None, help="queries per AKR case and method (default 200)")
    ap.add_argument("--akr-temperatures", type=float, nargs="*", default=[0.02, 0.05, 0.2])
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-akr", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tmp-dir", type=Path, default=None, help="where the stores are built (deleted after)")
    ap.add_argument("--quick", action="store_true", help="small sizes and counts: a smoke test")
    args = ap.parse_args(argv)
    quick = args.quick
    args.sizes = args.sizes or ([300, 1000] if quick else [1000, 10_000, 100_000])
    args.large_sizes = args.large_sizes if args.large_sizes is not None else ([] if quick else [1_000_000])
    args.client_sizes = (
        args.client_sizes if args.client_sizes is not None else ([300] if quick else [1000, 10_000, 20_000])
    )
    args.queries = args.queries or (8 if quick else 50)
    args.embed_questions = args.embed_questions if args.embed_questions is not None else (5 if quick else 30)
    args.akr_frames = args.akr_frames or (600 if quick else 2000)
    args.akr_queries = args.akr_queries or (20 if quick else 200)
    if quick:
        args.breakdown_queries = min(args.breakdown_queries, 2)

    t0 = time.perf_counter()
    edge: list[dict[str, Any]] = []
    client: list[dict[str, Any]] = []
    akr: list[dict[str, Any]] = []
    embed = None
    with tempfile.TemporaryDirectory(prefix="bench-retrieve-", dir=args.tmp_dir) as tmp:
        work = Path(tmp)
        if not args.skip_latency:
            most = max([*args.sizes, *args.client_sizes, *args.large_sizes])
            frames = FrameStore(work / "frames")
            t = time.perf_counter()
            write_cluster_records(
                frames.root, [cluster_record(point_id(args.seed, i), payload_for(i)) for i in range(most)]
            )
            emit(
                {
                    "bench": "retrieve-latency",
                    "setup": {
                        "vectors": SPECS,
                        "centres": N_CENTRES,
                        "cameras": CAMERAS,
                        "cluster_period_s": PERIOD_S,
                        "members_per_cluster": "2-8 at 1 fps",
                        "camera_axis_h_at_max_n": rnd(math.ceil(most / CAMERAS) * PERIOD_S / 3600, 1),
                        "filter_camera+range": "one camera, a window of 1/8 of its axis (about n/64 points)",
                        "mode": "akr",
                        "retrieval_config": RetrievalConfig().model_dump(),
                        "question_embedder": "stand-in (centre + noise); real aux-minilm timed in query-embed",
                        "with_images": False,
                        "upsert_batch": GEN_BATCH,
                        "optimize": "not called (builds HNSW that exact scoring does not use)",
                        "stores_grow": "one store per adapter grows through the sizes; build_s is cumulative",
                        "large_sizes": "qdrant-edge-text-only: the retrieval vector alone (Retrieve reads no other)",
                        "read_paths": "engine = Qdrant scores every point (before); score-index = in-RAM index",
                        "cluster_records": most,
                        "cluster_records_write_s": rnd(time.perf_counter() - t, 1),
                        "cell_budget_s": args.cell_budget_s,
                        **machine_info(),
                    },
                }
            )
            edge = bench_store("qdrant-edge", args.sizes, args, work, frames)
            if args.large_sizes:
                # The retrieval vector only: Retrieve never reads the 1280-d image vector, which at 1M
                # points would add 5 GB to the shard and ~10 min of upserts to the run.
                large = bench_store(
                    "qdrant-edge-text-only", args.large_sizes, args, work, frames, {TEXT_VECTOR: TEXT_DIM}
                )
                edge += large
            if args.client_sizes:
                client = bench_store("qdrant-client-local", args.client_sizes, args, work, frames)
            ratio_records(edge, client)
            target_records(edge)
        if args.embed_questions > 0:
            embed = bench_query_embedding(args.embed_questions)
            emit(embed)
        if not args.skip_akr:
            akr = bench_akr(args, work)
    wall = time.perf_counter() - t0
    emit({"bench": "retrieve-summary", "wall_s": rnd(wall, 1)})
    print(summary([*edge, *client], akr, embed, wall), file=sys.stderr)


if __name__ == "__main__":
    main()
