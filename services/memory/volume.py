"""The memory's volume: one writer at a time (an exclusive lock file) and a free-space floor under it.

Two ways a memory on disk used to break, and what this module does about each:

* **A second process opened it.** Qdrant Edge refuses a second opener of a shard only after it
  has touched the shard's files, which corrupted the holder's tracker journal ("is shorter than
  expected"). So every process takes `MemoryLock` -- a `flock` on a file beside the data -- before
  it touches Qdrant Edge or the frame store. The holder writes who it is into the lock file, and,
  once it serves one, the address of its `Retrieve`: a reader (`vigil ask`) that finds the lock
  held asks the holder instead of opening the files. The kernel drops a `flock` when its process
  dies, so a crashed holder never leaves a stale lock behind.
* **The disk filled up.** Qdrant Edge writes through memory-mapped files, and a page that cannot be
  backed on a full disk kills the whole process with SIGBUS (alerts included, in embedded mode).
  `DiskFloor` checks the free space of every volume the memory writes to before each write and,
  below `memory.min_free_bytes`, the writer refuses new frames and clusters (counted, logged once,
  health degraded) instead of writing into a full disk. Raw frames are the memory's ring buffer:
  before refusing, the oldest raw frames are evicted to make room (see `FrameStore.evict`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.memory import metrics

log = logging.getLogger(__name__)

LOCK_NAME = ".vigil-memory.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds a memory's lock, as the holder wrote it."""

    pid: int
    host: str
    command: str
    # "host:port" of the holder's MemoryService (Retrieve), "" while it serves none.
    retrieve_address: str = ""

    def describe(self) -> str:
        """One line for an error message."""
        return f"pid {self.pid} on {self.host} ({self.command})"


class MemoryInUse(RuntimeError):
    """Another process holds the memory's lock; `holder` says who (None when its lock file is unreadable)."""

    def __init__(self, path: Path, holder: Holder | None) -> None:
        who = holder.describe() if holder else "another process"
        super().__init__(
            f"the memory at {path} is in use by {who}: one process writes a memory at a time "
            "(ask it through its Retrieve, or wait until it ends, or use another --memory directory)"
        )
        self.path = path
        self.holder = holder


def lock_path(root: Path) -> Path:
    """The lock file of the memory whose frame store is at `root`."""
    return Path(root) / LOCK_NAME


def read_holder(root: Path) -> Holder | None:
    """The live holder of the memory at `root`, or None when nobody holds it (the lock is free or absent)."""
    path = lock_path(root)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            # A shared lock succeeds only while no writer holds the exclusive one.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse_holder(os.read(fd, 65536)) or Holder(0, "?", "unknown")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _parse_holder(raw: bytes) -> Holder | None:
    try:
        obj = json.loads(raw)
        return Holder(int(obj["pid"]), str(obj["host"]), str(obj["command"]), str(obj.get("retrieve_address", "")))
    except (ValueError, KeyError, TypeError):
        return None


class MemoryLock:
    """An exclusive `flock` on the memory's lock file, held for as long as the memory is open."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = lock_path(self.root)
        self._fd: int | None = None
        self._holder = Holder(os.getpid(), socket.gethostname(), " ".join(Path(a).name for a in sys.argv[:2]))

    def acquire(self) -> MemoryLock:
        """Take the lock or raise MemoryInUse naming the holder; never waits."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.read(fd, 65536)
            os.close(fd)
            raise MemoryInUse(self.root, _parse_holder(raw)) from None
        self._fd = fd
        self._write(self._holder)
        return self

    def advertise(self, retrieve_address: str) -> None:
        """Tell readers where this holder serves Retrieve ("" to withdraw it)."""
        self._holder = Holder(self._holder.pid, self._holder.host, self._holder.command, retrieve_address)
        if self._fd is not None:
            self._write(self._holder)

    def _write(self, holder: Holder) -> None:
        assert self._fd is not None
        data = json.dumps(holder.__dict__).encode()
        # The lock file is tiny; rewritten in place under the lock, read by others only while it is held.
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Drop the lock (closing the file drops the flock)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the volume holding `path` (its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.statvfs(p)
    return st.f_bavail * st.f_frsize


class DiskFloor:
    """Refuses writes while any of the memory's volumes has less than `min_free_bytes` free.

    `make_room(bytes_needed)` is tried once before a refusal (the frame store evicts its oldest raw
    frames); `on_change(degraded)` hears each transition, for health. `probe` is `free_bytes`,
    replaceable in unit tests of this logic.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        min_free_bytes: int,
        *,
        make_room: Callable[[int], int] | None = None,
        on_change: Callable[[bool], None] | None = None,
        probe: Callable[[Path], int] = free_bytes,
    ) -> None:
        self.paths = list(dict.fromkeys(Path(p) for p in paths))
        self.min_free_bytes = min_free_bytes
        self.make_room = make_room
        self.on_change = on_change
        self._probe = probe
        self._lock = threading.Lock()
        self.degraded = False
        self.refused = 0
        self._since = 0.0

    def free(self) -> int:
        """The least free space over the memory's volumes."""
        free = min(self._probe(p) for p in self.paths)
        metrics.DISK_FREE_BYTES.set(free)
        return free

    def admit(self, nbytes: int, kind: str) -> bool:
        """True when `nbytes` more still leave the floor free; otherwise make room once, then refuse (counted)."""
        if self.room_for(nbytes):
            return True
        with self._lock:
            self.refused += 1
        metrics.REFUSED_WRITES.labels(kind).inc()
        return False

    def room_for(self, nbytes: int) -> bool:
        """Whether `nbytes` more leave the floor free, after evicting the oldest raw frames if that helps.

        Not a write: nothing is counted as refused (opening the memory asks this before it starts).
        """
        if self.min_free_bytes <= 0:
            return True
        with self._lock:
            free = self.free()
            short = self.min_free_bytes + nbytes - free
            if short > 0 and self.make_room is not None:
                freed = self.make_room(short)
                if freed:
                    log.warning(
                        "memory volume under its floor: evicted %.1f MiB of the oldest raw frames", freed / 2**20
                    )
                    free = self.free()
                    short = self.min_free_bytes + nbytes - free
            self._set_degraded(short > 0, free)
            return short <= 0

    def _set_degraded(self, degraded: bool, free: int) -> None:
        if degraded == self.degraded:
            return
        self.degraded = degraded
        metrics.STORAGE_DEGRADED.set(int(degraded))
        if degraded:
            self._since = time.monotonic()
            log.error(
                "memory writes stopped: %.0f MiB free on the memory's volume, under the floor of %.0f MiB "
                "(memory.min_free_bytes); new frames and clusters are refused and counted until space returns. "
                "Alerts are not affected.",
                free / 2**20,
                self.min_free_bytes / 2**20,
            )
        else:
            log.warning(
                "memory writes resumed: %.0f MiB free after %.0f s under the floor (%d writes refused so far)",
                free / 2**20,
                time.monotonic() - self._since,
                self.refused,
            )
        if self.on_change is not None:
            self.on_change(degraded)
