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
from services.memory.store import StoreError, VectorStore, build_store
from services.memory.writer import MemoryWriter
from services.models.embedders.base import Embedder, build_embedder

log = logging.getLogger(__name__)


class Memory:
    """Opened from config; `retriever` answers, `writer` handles the frames and index topics."""

    def __init__(self, config: MemoryConfig, *, embedder: Embedder | None = None) -> None:
        self.config = config
        self.embedder = embedder or build_embedder(config.embedder)
        self.frames = FrameStore(config.frames.path, config.frames.retention_s, config.frames.max_bytes)
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
        self.writer = MemoryWriter(self.store, self.frames, self.embedder.name, lock)
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

    def close(self) -> None:
        """Flush and release the store (its lock on disk, for Qdrant Edge)."""
        with self._lock:
            self.store.close()


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
            return GrpcEndpoint(*create_server(settings.grpc_address, memory, security))

        super().__init__(
            "memory",
            consumers=consumers,
            loops=[("retention", memory.run_sweeper)] if sweep else [],
            serve=serve,
            closers=[memory.close] if close_memory else [],
            description=f"{memory.count()} index points, embedder {memory.embedder.name}",
        )


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
        except (StoreError, OSError) as exc:
            raise StageError(f"cannot open the memory: {exc}") from exc
    return MemoryStage(settings, bus, memory, sweep=sweep, close_memory=owned, security=security)
