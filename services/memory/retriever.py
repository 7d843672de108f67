"""Retrieve: a question -> keyframes from the hierarchical memory (Venus IV-D), transport-free.

1. The question is embedded with the memory's embedder (the indexing service's, by config).
2. The vector store gives the cosine similarity of every index frame in range (eq. 4).
3. Softmax with temperature T (eq. 5); then AKR (eq. 6-7), a fixed-budget sample, or greedy top-K.
4. Each chosen index frame drawn c times contributes c frames sampled uniformly from its
   cluster's raw frames; a raw frame past retention is replaced by its index frame.

Errors are typed so each transport maps them once: `RetrieveInvalid` (the request is wrong),
`RetrieveNotFound` (nothing to answer from), `StoreUnavailable` (the store is down).
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from services.common.memory_api import Mode, RetrieveInvalid, RetrieveNotFound, check_question, clipped
from services.memory.config import RetrievalConfig
from services.memory.frame_store import FrameStore
from services.memory.sampling import (
    Draws,
    frames_from_clusters,
    min_frames,
    sample_adaptive,
    sample_fixed,
    softmax,
    top_k,
)
from services.memory.store import ScoredFrame, VectorStore
from services.models.embedders.base import Embedder, EmbedderError


@dataclass(frozen=True)
class RetrieveQuery:
    """A question with its filters and (optional) overrides of the configured retrieval parameters."""

    question: str
    camera_id: str | None = None
    since_s: float | None = None
    until_s: float | None = None
    mode: Mode = Mode.AKR
    max_frames: int = 0
    temperature: float = 0.0
    theta: float = 0.0
    seed: int = 0
    with_images: bool = True


@dataclass(frozen=True)
class RetrievedFrame:
    """One keyframe: where it is on the time axis, which cluster it came from, how relevant that cluster is."""

    camera_id: str
    time_s: float
    capture_time_ns: int
    jpeg: bytes
    hit: ScoredFrame
    probability: float
    from_index_frame: bool


@dataclass
class RetrieveResult:
    """Keyframes in time order, and how they were chosen."""

    frames: list[RetrievedFrame]
    mode: Mode
    in_range: int
    clusters_chosen: int
    draws: int
    covered_probability: float
    n_min: int
    n_max: int
    temperature: float
    theta: float
    seed: int
    embedder: str
    limitations: str
    frames_expired: int = 0
    retrieve_ms: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)


def describe_range(camera_id: str | None, since_s: float | None, until_s: float | None) -> str:
    """The filter in words, for messages."""
    where = f"camera {clipped(camera_id)}" if camera_id else "any camera"
    lo = "the start" if since_s is None else f"{since_s:g}s"
    hi = "now" if until_s is None else f"{until_s:g}s"
    return f"{where} between {lo} and {hi}"


class Retriever:
    """The memory's read path over a vector store, a frame store and an embedder (all thread-safe to share)."""

    def __init__(
        self,
        store: VectorStore,
        frames: FrameStore,
        embedder: Embedder,
        config: RetrievalConfig | None = None,
        *,
        store_lock: threading.RLock | None = None,
        max_question_chars: int = 2000,
    ) -> None:
        self.store = store
        self.frames = frames
        self.embedder = embedder
        self.config = config or RetrievalConfig()
        self.max_question_chars = max_question_chars
        # Shared with the writers: one engine handle, used from gRPC and consumer threads.
        self.store_lock = store_lock or threading.RLock()
        self._embed_lock = threading.Lock()
        # The embedder says which named vectors a question gets only by embedding one.
        self.vector = self.config.vector or next(iter(embedder.embed_query("probe")))
        if self.vector not in embedder.vector_specs:
            raise ValueError(f"retrieval vector {self.vector!r} is not one of {sorted(embedder.vector_specs)}")

    def _check(self, q: RetrieveQuery) -> str:
        question = check_question(q.question, self.max_question_chars)
        if q.since_s is not None and q.until_s is not None and q.since_s > q.until_s:
            raise RetrieveInvalid(f"the time range is inverted: since {q.since_s:g}s is after until {q.until_s:g}s")
        for name, value in (("since", q.since_s), ("until", q.until_s)):
            if value is not None and not math.isfinite(value):
                raise RetrieveInvalid(f"{name} must be a finite number of seconds, got {value}")
        if q.max_frames < 0 or q.max_frames > 4 * self.config.max_frames_cap:
            raise RetrieveInvalid(f"max_frames must be in [0, {4 * self.config.max_frames_cap}], got {q.max_frames}")
        if q.temperature < 0 or not math.isfinite(q.temperature):
            raise RetrieveInvalid(
                f"temperature must be > 0 (0 = default {self.config.temperature}), got {q.temperature}"
            )
        if not 0.0 <= q.theta <= 1.0:
            raise RetrieveInvalid(f"theta must be in (0, 1] (0 = default {self.config.theta}), got {q.theta}")
        return question

    def retrieve(self, q: RetrieveQuery) -> RetrieveResult:
        """Run the read path; raises RetrieveInvalid, RetrieveNotFound or StoreUnavailable/StoreError."""
        t0 = time.perf_counter()
        question = self._check(q)
        timings: dict[str, float] = {}
        with self.store_lock:
            if q.camera_id:
                cameras = self.store.cameras()
                if q.camera_id not in cameras:
                    known = ", ".join(cameras) if cameras else "none yet"
                    raise RetrieveNotFound(f"unknown camera {clipped(q.camera_id)}; the memory holds cameras: {known}")
        t = time.perf_counter()
        try:
            with self._embed_lock:
                qvec = self.embedder.embed_query(question)[self.vector]
        except EmbedderError as e:
            raise RetrieveInvalid(str(e)) from e
        timings["embed_ms"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        with self.store_lock:
            ids, sims = self.store.similarities_in_range(
                self.vector, qvec, camera_id=q.camera_id or None, since_s=q.since_s, until_s=q.until_s
            )
        timings["search_ms"] = (time.perf_counter() - t) * 1e3
        if len(ids) == 0:
            raise RetrieveNotFound(f"the memory holds nothing for {describe_range(q.camera_id, q.since_s, q.until_s)}")

        temperature = q.temperature or self.config.temperature
        theta = q.theta or self.config.theta
        n_max = q.max_frames or self.config.n_max()
        n_min = min_frames(n_max, self.config.lam)
        seed = q.seed or random.SystemRandom().randrange(1, 2**63)
        rng = np.random.default_rng(seed)
        p = softmax(sims, temperature)
        t = time.perf_counter()
        draws: Draws
        if q.mode is Mode.AKR:
            draws = sample_adaptive(p, theta, n_min, n_max, rng)
        elif q.mode is Mode.SAMPLE:
            draws = sample_fixed(p, n_max, rng)
        else:
            draws = top_k(sims, n_max)
        timings["sample_ms"] = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        chosen = sorted(draws.counts)
        with self.store_lock:
            payloads = self.store.payloads([ids[i] for i in chosen])
        # A point deleted between the two calls is simply not returned.
        hits = {i: ScoredFrame(ids[i], payloads[ids[i]], float(sims[i])) for i in chosen if ids[i] in payloads}
        frames, expired = self._frames(hits, p, draws, rng, q.mode, q.with_images)
        timings["frames_ms"] = (time.perf_counter() - t) * 1e3
        covered = float(p[list(draws.counts)].sum()) if draws.counts else 0.0
        return RetrieveResult(
            frames=frames,
            mode=q.mode,
            in_range=len(ids),
            clusters_chosen=len(draws.counts),
            draws=draws.draws,
            covered_probability=covered if q.mode is not Mode.TOP_K else float("nan"),
            n_min=n_min,
            n_max=n_max,
            temperature=temperature,
            theta=theta,
            seed=seed,
            embedder=self.embedder.name,
            limitations=self.embedder.limitations,
            frames_expired=expired,
            retrieve_ms=(time.perf_counter() - t0) * 1e3,
            timings_ms=timings,
        )

    def _frames(
        self,
        hits: dict[int, ScoredFrame],
        p: np.ndarray,
        draws: Draws,
        rng: np.random.Generator,
        mode: Mode,
        with_images: bool,
    ) -> tuple[list[RetrievedFrame], int]:
        """Uniform frames inside each chosen cluster (top-K: the index frame itself), time-ordered."""
        members: dict[int, list[tuple[float, int]]] = {}
        for i, hit in hits.items():
            rec = None if mode is Mode.TOP_K else self.frames.get_cluster(hit.payload.camera_id, hit.point_id)
            if rec is None or not rec.members:
                # The index frame alone: greedy top-K's choice, or a cluster whose record is missing.
                members[i] = [(hit.payload.index_time_s, 0)]
            else:
                members[i] = [(m.time_s, m.capture_time_ns) for m in rec.members]
        kept = Draws({i: c for i, c in draws.counts.items() if i in hits}, draws.draws, draws.covered_probability)
        picks = frames_from_clusters(kept, {i: range(len(m)) for i, m in members.items()}, rng)
        out: list[RetrievedFrame] = []
        expired = 0
        for i, j in picks:
            hit = hits[i]
            time_s, capture_ns = members[i][j]
            is_index = abs(time_s - hit.payload.index_time_s) < 5e-4
            jpeg = b""
            if with_images:
                raw = None if is_index else self.frames.get_frame(hit.payload.camera_id, time_s)
                if raw is None:
                    if not is_index:
                        expired += 1
                    # The index frame stands in for a raw frame past retention (or is the choice itself).
                    jpeg = self.frames.get_index_frame(hit.payload.camera_id, hit.point_id) or b""
                    if not is_index:
                        time_s, is_index = hit.payload.index_time_s, True
                else:
                    jpeg = raw
            out.append(RetrievedFrame(hit.payload.camera_id, time_s, capture_ns, jpeg, hit, float(p[i]), is_index))
        # Several raw frames of one cluster may all have fallen back to the same index frame.
        unique = {(f.camera_id, round(f.time_s, 3)): f for f in out}
        return sorted(unique.values(), key=lambda f: (f.time_s, f.camera_id)), expired
