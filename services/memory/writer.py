"""The memory's write path: raw frames (frames topic) and closed clusters (index topic) made durable.

Both handlers return only after the data is on disk (fsynced JPEG/JSON, flushed Qdrant
upsert), so the bus commits an offset only for work that survives a crash. A store that
is down raises RetryableError (the same record is retried, nothing is skipped); a record
that can never be stored (undecodable, wrong embedder, wrong vector sizes) is a
PoisonMessage for the dead-letter topic. While the memory's volume is under its free-space
floor (services/memory/volume.py), or the disk says it is full, new frames and clusters are
refused: counted and committed, so the memory has a gap and never a stall or a crash.
"""

from __future__ import annotations

import errno
import logging
import threading
import time

import numpy as np
from google.protobuf.message import DecodeError

from services.common.bus import Message, PoisonMessage, RetryableError
from services.common.frames import frame_time_s
from services.memory import metrics
from services.memory.frame_store import ClusterRecord, FrameStore, MemberFrame
from services.memory.store import FramePayload, IndexPoint, StoreError, StoreUnavailable, VectorStore
from services.memory.volume import DiskFloor
from vigil.media.v1 import frame_pb2
from vigil.memory.v1 import memory_pb2

log = logging.getLogger(__name__)

# Errors that mean "no space", not "try again in a moment": retrying them would stall the consumer.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def entry_to_point(entry: memory_pb2.IndexEntry) -> IndexPoint:
    """An IndexEntry as the vector store's point (vectors by name, payload with the cluster's span)."""
    return IndexPoint(
        point_id=entry.point_id,
        vectors={v.name: np.asarray(v.values, dtype=np.float32) for v in entry.vectors},
        payload=FramePayload(
            camera_id=entry.camera_id,
            scene_id=entry.scene_id,
            cluster_id=entry.cluster_id,
            start_s=entry.start_s,
            end_s=entry.end_s,
            index_frame=entry.index_frame.seq,
            frame_count=len(entry.members),
            aux_text=entry.aux_text,
            index_time_s=entry.index_frame.time_s,
            embedder=entry.embedder,
        ),
    )


class MemoryWriter:
    """Handlers for the frames and index topics; thread-safe, sharing the store lock with the read path."""

    def __init__(
        self,
        store: VectorStore,
        frames: FrameStore,
        embedder_name: str,
        store_lock: threading.RLock | None = None,
        *,
        floor: DiskFloor | None = None,
    ) -> None:
        self.store = store
        self.frames = frames
        self.embedder_name = embedder_name
        self.store_lock = store_lock or threading.RLock()
        self.floor = floor
        self.frames_stored = 0
        self.entries_stored = 0
        # Refused for lack of disk space: handled (committed), not stored.
        self.frames_refused = 0
        self.entries_refused = 0
        self.cond = threading.Condition()

    @property
    def frames_done(self) -> int:
        """Frames stored or refused: the frames topic records this writer has finished with."""
        return self.frames_stored + self.frames_refused

    @property
    def entries_done(self) -> int:
        """Index entries stored or refused."""
        return self.entries_stored + self.entries_refused

    def _refuse(self, kind: str, what: str, exc: OSError | None = None) -> None:
        """Count a write refused for lack of space (the floor already counted its own refusals)."""
        if exc is not None:
            metrics.REFUSED_WRITES.labels(kind).inc()
            log.error("memory: %s not stored, the disk is full: %s", what, exc)
        with self.cond:
            if kind == "frame":
                self.frames_refused += 1
            else:
                self.entries_refused += 1
            self.cond.notify_all()

    def _admit(self, nbytes: int, kind: str) -> bool:
        return self.floor is None or self.floor.admit(nbytes, kind)

    def on_frame(self, msg: Message) -> None:
        """A sampled frame -> the raw layer."""
        try:
            frame = frame_pb2.Frame.FromString(msg.value)
        except DecodeError as e:
            raise PoisonMessage(f"not a vigil.media.v1.Frame: {e}") from e
        if not frame.camera_id or not frame.jpeg:
            raise PoisonMessage(f"frame {frame.seq} has no camera id or no JPEG")
        t = frame_time_s(frame.live, frame.pts_s, frame.capture_time_ns)
        if not self._admit(len(frame.jpeg), "frame"):
            self._refuse("frame", f"frame {frame.camera_id}@{t:.3f}s")
            return
        try:
            self.frames.put_frame(frame.camera_id, t, frame.jpeg)
        except OSError as e:
            if e.errno in _NO_SPACE:
                self._refuse("frame", f"frame {frame.camera_id}@{t:.3f}s", e)
                return
            # A full or unmounted disk may come back; the record stays uncommitted meanwhile.
            metrics.WRITE_ERRORS.labels("frame").inc()
            raise RetryableError(f"cannot store frame {frame.camera_id}@{t:.3f}s: {e}") from e
        metrics.RAW_FRAMES.inc()
        with self.cond:
            self.frames_stored += 1
            self.cond.notify_all()

    def on_index_entry(self, msg: Message) -> None:
        """A closed cluster -> its cluster record and index frame on disk, then its point in the vector store."""
        try:
            entry = memory_pb2.IndexEntry.FromString(msg.value)
        except DecodeError as e:
            raise PoisonMessage(f"not a vigil.memory.v1.IndexEntry: {e}") from e
        if entry.embedder != self.embedder_name:
            # Vectors from another model live in another space: storing them would corrupt every answer.
            raise PoisonMessage(
                f"index entry {entry.point_id} was embedded by {entry.embedder!r}, this memory embeds questions "
                f"with {self.embedder_name!r}: configure indexing and memory with the same embedder"
            )
        if not entry.members:
            raise PoisonMessage(f"index entry {entry.point_id} has no member frames")
        point = entry_to_point(entry)
        record = ClusterRecord(
            entry.point_id,
            entry.camera_id,
            [MemberFrame(m.time_s, m.capture_time_ns, m.seq) for m in entry.members],
        )
        # The JPEG, the member list and the vector's share of the shard (segments and WAL hold it more than once).
        nbytes = len(entry.index_jpeg) + 64 * len(entry.members) + 16 * sum(len(v.values) for v in entry.vectors)
        if not self._admit(nbytes, "cluster"):
            self._refuse("cluster", f"cluster {entry.point_id}")
            return
        try:
            # The cluster layer first: a point is only searchable once its frames can be found.
            self.frames.put_cluster(record, entry.index_jpeg)
            with self.store_lock:
                self.store.upsert([point])
        except StoreUnavailable as e:
            metrics.WRITE_ERRORS.labels("index").inc()
            raise RetryableError(str(e)) from e
        except StoreError as e:
            metrics.WRITE_ERRORS.labels("index").inc()
            raise PoisonMessage(f"index entry {entry.point_id} rejected by the vector store: {e}") from e
        except OSError as e:
            if e.errno in _NO_SPACE:
                self._refuse("cluster", f"cluster {entry.point_id}", e)
                return
            metrics.WRITE_ERRORS.labels("index").inc()
            raise RetryableError(f"cannot store cluster {entry.point_id}: {e}") from e
        metrics.INDEX_POINTS.inc()
        if entry.indexed_time_ns:
            metrics.INDEX_LAG.observe(max(0.0, time.time() - entry.indexed_time_ns / 1e9))
        with self.cond:
            self.entries_stored += 1
            self.cond.notify_all()
