"""The memory's volume: the free-space floor's decisions, the lock file, and raw-frame eviction."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.memory import metrics
from services.memory.frame_store import FrameStore
from services.memory.volume import DiskFloor, MemoryInUse, MemoryLock, read_holder

MiB = 2**20


class Disk:
    """A volume whose free space the test sets (a unit test of the floor's logic, not of statvfs)."""

    def __init__(self, free: int) -> None:
        self.free = free

    def probe(self, _path: Path) -> int:
        return self.free


def test_floor_admits_above_and_refuses_below_counting_each_refusal(tmp_path: Path) -> None:
    disk = Disk(100 * MiB)
    changes: list[bool] = []
    floor = DiskFloor([tmp_path], 50 * MiB, on_change=changes.append, probe=disk.probe)
    before = metrics.REFUSED_WRITES.labels("frame")._value.get()
    assert floor.admit(10 * MiB, "frame")
    # 45 MiB more would leave 55 free: fine; 51 would leave 49: refused.
    assert floor.admit(45 * MiB, "frame")
    assert not floor.admit(51 * MiB, "frame")
    assert not floor.admit(51 * MiB, "frame")
    assert floor.refused == 2 and floor.degraded
    assert metrics.REFUSED_WRITES.labels("frame")._value.get() - before == 2
    assert metrics.STORAGE_DEGRADED._value.get() == 1
    disk.free = 500 * MiB
    assert floor.admit(51 * MiB, "frame") and not floor.degraded
    # One transition each way, not one per write.
    assert changes == [True, False]


def test_floor_makes_room_once_before_refusing(tmp_path: Path) -> None:
    disk = Disk(10 * MiB)
    asked: list[int] = []

    def make_room(nbytes: int) -> int:
        # One old bucket of 30 MiB to evict, then nothing left.
        asked.append(nbytes)
        freed = 30 * MiB if len(asked) == 1 else 0
        disk.free += freed
        return freed

    floor = DiskFloor([tmp_path], 20 * MiB, make_room=make_room, probe=disk.probe)
    assert floor.admit(1 * MiB, "frame")
    assert asked == [11 * MiB]
    # Not enough room even after eviction: refused, after exactly one more attempt.
    disk.free = 0
    assert not floor.admit(1 * MiB, "cluster")
    assert len(asked) == 2


def test_room_for_answers_without_counting_a_refused_write(tmp_path: Path) -> None:
    """Opening the memory asks whether there is room; a no there is not a refused frame or cluster."""
    disk = Disk(10 * MiB)
    floor = DiskFloor([tmp_path], 50 * MiB, probe=disk.probe)
    before = {kind: metrics.REFUSED_WRITES.labels(kind)._value.get() for kind in ("frame", "cluster")}
    assert not floor.room_for(0)
    assert floor.degraded and floor.refused == 0
    assert {kind: metrics.REFUSED_WRITES.labels(kind)._value.get() for kind in ("frame", "cluster")} == before
    disk.free = 60 * MiB
    assert floor.room_for(0) and not floor.degraded


def test_floor_zero_never_checks(tmp_path: Path) -> None:
    def probe(_path: Path) -> int:
        raise AssertionError("statvfs called with the check off")

    assert DiskFloor([tmp_path], 0, probe=probe).admit(10**12, "frame")


def test_floor_watches_the_fullest_volume(tmp_path: Path) -> None:
    free = {tmp_path / "a": 100 * MiB, tmp_path / "b": 5 * MiB}
    floor = DiskFloor(list(free), 10 * MiB, probe=free.__getitem__)
    assert floor.free() == 5 * MiB
    assert not floor.admit(0, "frame")


def test_lock_is_exclusive_names_its_holder_and_advertises_retrieve(tmp_path: Path) -> None:
    assert read_holder(tmp_path) is None
    lock = MemoryLock(tmp_path).acquire()
    try:
        with pytest.raises(MemoryInUse, match=f"pid {os.getpid()}") as info:
            MemoryLock(tmp_path).acquire()
        assert info.value.holder is not None and info.value.holder.retrieve_address == ""
        lock.advertise("127.0.0.1:4242")
        holder = read_holder(tmp_path)
        assert holder is not None and holder.pid == os.getpid() and holder.retrieve_address == "127.0.0.1:4242"
    finally:
        lock.release()
    assert read_holder(tmp_path) is None
    MemoryLock(tmp_path).acquire().release()


def test_lock_of_a_killed_holder_is_free_at_once(tmp_path: Path) -> None:
    code = (
        "import sys, time; from services.memory.volume import MemoryLock; "
        f"MemoryLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        holder = read_holder(tmp_path)
        assert holder is not None and holder.pid == proc.pid
        with pytest.raises(MemoryInUse, match=f"pid {proc.pid}"):
            MemoryLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()
    # The kernel dropped the flock with the process: no stale lock to clean up by hand.
    MemoryLock(tmp_path).acquire().release()


def test_evict_deletes_whole_oldest_buckets_until_enough_is_freed(tmp_path: Path) -> None:
    store = FrameStore(tmp_path)
    for hour in range(3):
        for i in range(4):
            store.put_frame("cam", hour * 3600.0 + i, b"x" * 1000)
        # Buckets are ordered by their newest write.
        time.sleep(0.01)
    assert store.raw_usage() == (12, 12_000)
    assert store.evict(5000) == 8000
    assert store.raw_usage() == (4, 4000)
    assert store.get_frame("cam", 0.0) is None and store.get_frame("cam", 3600.0) is None
    assert store.get_frame("cam", 7200.0) == b"x" * 1000
    assert store.evict(10**9) == 4000 and store.evict(1) == 0
