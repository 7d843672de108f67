"""The memory's layers on disk: raw frames (bounded by retention) and clusters (kept with their index points).

Layout under the configured root:

    raw/<camera>/<hour>/<time_ms>.jpg      every sampled frame; <hour> = time_ms // 3_600_000
    clusters/<camera>/<point_id>.jpg       the cluster's index frame (outlives raw retention)
    clusters/<camera>/<point_id>.json      the cluster's member frames (times, capture times, seqs)

Frames are keyed by their place on the camera's time axis (milliseconds), so a frame
delivered twice, or a video indexed twice, overwrites itself instead of piling up.
Every write goes to a temporary file in the same directory, is fsynced and renamed,
so a crash leaves either the old or the new file, never half of one; the caller
commits its Kafka offset only after the write returned.

Retention works on whole (camera, hour) buckets of the raw layer: the oldest-written
buckets are deleted once older than `retention_s` or while the raw layer is larger
than `max_bytes`. Cluster files are small and stay until their point is deleted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.frames import time_key

log = logging.getLogger(__name__)

_HOUR_MS = 3_600_000
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def camera_dir_name(camera_id: str) -> str:
    """A camera id as a directory name: unsafe characters become '_' and a hash keeps distinct ids distinct."""
    safe = _SAFE.sub("_", camera_id)
    if safe == camera_id and camera_id not in {"", ".", ".."}:
        return safe
    import hashlib

    return f"{safe.strip('.') or 'cam'}-{hashlib.sha1(camera_id.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class MemberFrame:
    """One raw frame of a cluster."""

    time_s: float
    capture_time_ns: int
    seq: int


@dataclass(frozen=True)
class ClusterRecord:
    """What the cluster layer keeps for one index point."""

    point_id: str
    camera_id: str
    members: list[MemberFrame]

    def to_json(self) -> bytes:
        """The on-disk form."""
        return json.dumps(
            {
                "point_id": self.point_id,
                "camera_id": self.camera_id,
                "members": [[m.time_s, m.capture_time_ns, m.seq] for m in self.members],
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ClusterRecord:
        """Parse the on-disk form."""
        obj: dict[str, Any] = json.loads(data)
        return cls(
            str(obj["point_id"]),
            str(obj["camera_id"]),
            [MemberFrame(float(t), int(c), int(s)) for t, c, s in obj["members"]],
        )


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class _Bucket:
    bytes: int = 0
    files: int = 0
    newest_write: float = 0.0


class FrameStore:
    """Raw frames and cluster records on a local directory (see the module docstring)."""

    def __init__(self, root: Path, retention_s: float = 7 * 86400.0, max_bytes: int = 20 * 1024**3) -> None:
        self.root = Path(root)
        self.retention_s = retention_s
        self.max_bytes = max_bytes
        self._raw = self.root / "raw"
        self._clusters = self.root / "clusters"
        self._lock = threading.Lock()
        self._buckets: dict[Path, _Bucket] = {}
        self.expired_buckets = 0
        try:
            self._raw.mkdir(parents=True, exist_ok=True)
            self._clusters.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"frame store root {self.root} is not writable: {e}") from e
        self._scan()

    def _scan(self) -> None:
        """Rebuild the bucket table from disk (start-up: the memory survives restarts)."""
        for cam in self._raw.iterdir():
            if not cam.is_dir():
                continue
            for hour in cam.iterdir():
                if not hour.is_dir():
                    continue
                b = _Bucket()
                for entry in os.scandir(hour):
                    if entry.name.endswith(".jpg"):
                        st = entry.stat()
                        b.bytes += st.st_size
                        b.files += 1
                        b.newest_write = max(b.newest_write, st.st_mtime)
                self._buckets[hour] = b

    def _raw_path(self, camera_id: str, time_s: float) -> Path:
        ms = time_key(time_s)
        return self._raw / camera_dir_name(camera_id) / str(ms // _HOUR_MS) / f"{ms}.jpg"

    def put_frame(self, camera_id: str, time_s: float, jpeg: bytes) -> None:
        """Store one raw frame durably (replaces a frame at the same time)."""
        path = self._raw_path(camera_id, time_s)
        old = path.stat().st_size if path.exists() else None
        _atomic_write(path, jpeg)
        with self._lock:
            b = self._buckets.setdefault(path.parent, _Bucket())
            b.bytes += len(jpeg) - (old or 0)
            b.files += 0 if old is not None else 1
            b.newest_write = time.time()

    def get_frame(self, camera_id: str, time_s: float) -> bytes | None:
        """A raw frame's JPEG, or None when it was never stored or is past retention."""
        try:
            return self._raw_path(camera_id, time_s).read_bytes()
        except FileNotFoundError:
            return None

    def put_cluster(self, record: ClusterRecord, index_jpeg: bytes) -> None:
        """Store a cluster's members and index frame durably (the JSON last: it marks the record complete)."""
        d = self._clusters / camera_dir_name(record.camera_id)
        if index_jpeg:
            _atomic_write(d / f"{record.point_id}.jpg", index_jpeg)
        _atomic_write(d / f"{record.point_id}.json", record.to_json())

    def get_cluster(self, camera_id: str, point_id: str) -> ClusterRecord | None:
        """A cluster's member list, or None if the record is missing."""
        try:
            path = self._clusters / camera_dir_name(camera_id) / f"{point_id}.json"
            return ClusterRecord.from_json(path.read_bytes())
        except FileNotFoundError:
            return None

    def get_index_frame(self, camera_id: str, point_id: str) -> bytes | None:
        """A cluster's index frame JPEG, or None."""
        try:
            return (self._clusters / camera_dir_name(camera_id) / f"{point_id}.jpg").read_bytes()
        except FileNotFoundError:
            return None

    def raw_usage(self) -> tuple[int, int]:
        """(files, bytes) in the raw layer."""
        with self._lock:
            return sum(b.files for b in self._buckets.values()), sum(b.bytes for b in self._buckets.values())

    def sweep(self, now: float | None = None) -> int:
        """Apply retention: delete whole raw buckets by age, then oldest first while over max_bytes."""
        now = time.time() if now is None else now
        with self._lock:
            order = sorted(self._buckets.items(), key=lambda kv: kv[1].newest_write)
            total = sum(b.bytes for _, b in order)
            doomed: list[Path] = []
            for path, b in order:
                if now - b.newest_write > self.retention_s or total > self.max_bytes:
                    doomed.append(path)
                    total -= b.bytes
            for path in doomed:
                del self._buckets[path]
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
            log.info("retention: deleted raw frames %s", path)
        self.expired_buckets += len(doomed)
        return len(doomed)

    def evict(self, nbytes: int) -> int:
        """Delete the oldest raw buckets, whole, until at least `nbytes` are freed (or none is left); bytes freed.

        The disk-space floor's first resort (services/memory/volume.py): raw frames are the memory's ring
        buffer, and their clusters' index frames and member lists stay.
        """
        with self._lock:
            order = sorted(self._buckets.items(), key=lambda kv: kv[1].newest_write)
            doomed: list[Path] = []
            freed = 0
            for path, b in order:
                if freed >= nbytes:
                    break
                doomed.append(path)
                freed += b.bytes
                del self._buckets[path]
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
            log.warning("disk floor: deleted raw frames %s before their retention", path)
        self.expired_buckets += len(doomed)
        return freed
