"""The memory as one object: vector store + frame store + embedder, with its read and write paths."""

from __future__ import annotations

import logging
import threading

from services.memory import metrics
from services.memory.config import MemoryConfig
from services.memory.frame_store import FrameStore
from services.memory.retriever import Retriever
from services.memory.store import VectorStore, build_store
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
        self.retriever = Retriever(
            self.store,
            self.frames,
            self.embedder,
            config.retrieval,
            store_lock=lock,
            max_question_chars=config.max_question_chars,
        )
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
