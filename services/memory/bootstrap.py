"""Composition root of the memory: the vector store, frame store and embedder as one `Memory`, and its stage."""

from __future__ import annotations

import logging
import threading
import time

from services.common.bus import Bus
from services.common.grpc_runtime import ServerSecurity, server_security
from services.common.runtime import GrpcEndpoint, Stage, StageError
from services.memory import metrics
from services.memory.config import MemoryConfig, MemorySettings
from services.memory.frame_store import FrameStore
from services.memory.grpc_server import create_server
from services.memory.retriever import Retriever
from services.memory.store import QdrantEdgeStoreConfig, StoreError, VectorStore, build_store
from services.memory.volume import DiskFloor, MemoryInUse, MemoryLock
from services.memory.writer import MemoryWriter
from services.models.embedders.base import Embedder, build_embedder

log = logging.getLogger(__name__)


# The health service name that reports whether the memory is storing (NOT_SERVING while the disk floor
# refuses writes); "" and the MemoryService itself stay SERVING, since Retrieve still answers.
WRITES_HEALTH = "vigil.memory.writes"


class Memory:
    """Opened from config; `retriever` answers, `writer` handles the frames and index topics.

    MemoryInUse when another process holds the memory's lock (services/memory/volume.py): it is
    taken before anything touches Qdrant Edge or the frame store, and held until `close`.
    """

    def __init__(self, config: MemoryConfig, *, embedder: Embedder | None = None) -> None:
        self.config = config
        self.lock = MemoryLock(config.frames.path).acquire()
        try:
            self._open(config, embedder)
        except BaseException:
            self.lock.release()
            raise

    def _open(self, config: MemoryConfig, embedder: Embedder | None) -> None:
        self.embedder = embedder or build_embedder(config.embedder)
        self.frames = FrameStore(config.frames.path, config.frames.retention_s, config.frames.max_bytes)
        volumes = [config.frames.path]
        if isinstance(config.store, QdrantEdgeStoreConfig):
            volumes.append(config.store.path)
        self._health: list[tuple[object, str]] = []
        self.floor = DiskFloor(volumes, config.min_free_bytes, make_room=self._evict, on_change=self._on_floor_change)
        if not self.floor.room_for(0):
            # A shard created or replayed on a full disk is where SIGBUS strikes: do not touch it at all.
            raise StoreError(
                f"the memory's volume has {self.floor.free() / 2**20:.0f} MiB free, under its floor of "
                f"{config.min_free_bytes / 2**20:.0f} MiB (memory.min_free_bytes): free some space, or lower the floor"
            )
        self.store: VectorStore = build_store(config.store)
        lock = threading.RLock()
        try:
            with lock:
                # Creates the collection on first start; on a restart, checks it holds this embedder's vectors.
                self.store.ensure_collection(self.embedder.vector_specs)
        except Exception:
            self.store.close()
            raise
        try:
            self.retriever = Retriever(
                self.store,
                self.frames,
                self.embedder,
                config.retrieval,
                store_lock=lock,
                max_question_chars=config.max_question_chars,
            )
            with lock:
                # Exact scores of every point in RAM (why: services/memory/score_index.py); a memory larger
                # than the configured limit is refused here, with the figures, rather than OOM-killed later.
                t = time.perf_counter()
                index = self.store.keep_scores_in_memory(self.retriever.vector, config.retrieval.score_index_max_bytes)
                log.info(
                    "score index: %d points of %r in %.2f s (%.1f MiB of %.0f MiB)",
                    len(index),
                    index.vector_name,
                    time.perf_counter() - t,
                    index.nbytes() / 2**20,
                    index.max_bytes / 2**20,
                )
                # Read at scrape time: the index grows with every upsert through the store.
                metrics.SCORE_INDEX_POINTS.set_function(lambda: len(index))
                metrics.SCORE_INDEX_BYTES.set_function(index.nbytes)
        except Exception:
            self.store.close()
            raise
        self.writer = MemoryWriter(self.store, self.frames, self.embedder.name, lock, floor=self.floor)
        self._lock = lock
        log.info(
            "memory open: %s points, embedder %s, frames at %s",
            self.count(),
            self.embedder.name,
            config.frames.path,
        )

    def count(self) -> int:
        """Index points in the memory."""
        with self._lock:
            return self.store.count()

    def sweep(self) -> int:
        """Apply raw-frame retention now; returns buckets deleted."""
        n = self.frames.sweep()
        metrics.EXPIRED_BUCKETS.inc(n)
        metrics.RAW_BYTES.set(self.frames.raw_usage()[1])
        return n

    def run_sweeper(self, stop: threading.Event) -> None:
        """Thread body: retention every sweep_interval_s until `stop`."""
        while not stop.wait(self.config.frames.sweep_interval_s):
            try:
                self.sweep()
            except Exception:
                log.exception("retention sweep failed")

    def _evict(self, nbytes: int) -> int:
        """The disk floor's first resort: the oldest raw frames."""
        freed = self.frames.evict(nbytes)
        metrics.EVICTED_BYTES.inc(freed)
        metrics.RAW_BYTES.set(self.frames.raw_usage()[1])
        return freed

    def watch_health(self, servicer: object) -> None:
        """Report the writes' state to a gRPC health servicer under WRITES_HEALTH, now and on every change."""
        self._health.append((servicer, WRITES_HEALTH))
        self._on_floor_change(self.floor.degraded)

    def _on_floor_change(self, degraded: bool) -> None:
        from grpc_health.v1 import health_pb2

        status = health_pb2.HealthCheckResponse.NOT_SERVING if degraded else health_pb2.HealthCheckResponse.SERVING
        for servicer, name in self._health:
            servicer.set(name, status)  # type: ignore[attr-defined]

    def advertise(self, retrieve_address: str) -> None:
        """Write where this process serves Retrieve into the memory's lock file, for readers (`vigil ask`)."""
        self.lock.advertise(retrieve_address)

    def close(self) -> None:
        """Flush and release the store (its lock on disk, for Qdrant Edge), then the memory's own lock."""
        try:
            with self._lock:
                self.store.close()
        finally:
            self.lock.release()


class MemoryStage(Stage):
    """Frames and index topics -> disk and vector store; Retrieve and Describe over gRPC; retention."""

    def __init__(
        self,
        settings: MemorySettings,
        bus: Bus,
        memory: Memory,
        *,
        sweep: bool,
        close_memory: bool,
        security: ServerSecurity | None = None,
    ) -> None:
        self.memory = memory
        topics, cfg = settings.topics, settings.memory
        consumers = [
            bus.consumer(
                [topics.frames],
                cfg.frames_consumer_group,
                memory.writer.on_frame,
                dead_letter_topic=topics.dead_letter(topics.frames),
            ),
            bus.consumer(
                [topics.index],
                cfg.index_consumer_group,
                memory.writer.on_index_entry,
                dead_letter_topic=topics.dead_letter(topics.index),
            ),
        ]

        def serve() -> GrpcEndpoint:
            endpoint = GrpcEndpoint(*create_server(settings.grpc_address, memory, security))
            memory.watch_health(endpoint.health)
            memory.advertise(_reachable(settings.grpc_address, endpoint.port))
            return endpoint

        super().__init__(
            "memory",
            consumers=consumers,
            loops=[("retention", memory.run_sweeper)] if sweep else [],
            serve=serve,
            closers=[memory.close] if close_memory else [],
            description=f"{memory.count()} index points, embedder {memory.embedder.name}",
        )


def _reachable(address: str, port: int) -> str:
    """host:port a process on this machine can dial for a server bound to `address` (a wildcard -> loopback)."""
    host = address.rsplit(":", 1)[0].strip("[]")
    if host in {"", "0.0.0.0", "::", "*"}:
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build(
    settings: MemorySettings,
    bus: Bus | None,
    *,
    memory: Memory | None = None,
    embedder: Embedder | None = None,
    sweep: bool = True,
) -> MemoryStage:
    """The memory stage; a `memory` opened by the caller stays the caller's to close.

    StageError when the memory cannot be opened (a locked or foreign store, an unwritable path).
    """
    if bus is None:
        raise ValueError("the memory needs a bus")
    security = server_security(settings.grpc_security)
    owned = memory is None
    if memory is None:
        try:
            memory = Memory(settings.memory, embedder=embedder)
        except (StoreError, OSError, MemoryInUse) as exc:
            raise StageError(f"cannot open the memory: {exc}") from exc
    return MemoryStage(settings, bus, memory, sweep=sweep, close_memory=owned, security=security)
