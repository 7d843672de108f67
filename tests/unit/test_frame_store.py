"""The memory's on-disk layers: atomic frames, cluster records, retention by age and size, restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.frames import frame_time_s
from services.memory.frame_store import ClusterRecord, FrameStore, MemberFrame, camera_dir_name


def test_frames_round_trip_and_overwrite(tmp_path: Path) -> None:
    fs = FrameStore(tmp_path)
    fs.put_frame("cam", 1.2, b"a" * 10)
    fs.put_frame("cam", 1.2, b"b" * 4)  # the same frame again (redelivery): replaced, not added
    assert fs.get_frame("cam", 1.2) == b"bbbb"
    assert fs.get_frame("cam", 1.4) is None
    assert fs.raw_usage() == (1, 4)
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_cluster_records_round_trip(tmp_path: Path) -> None:
    fs = FrameStore(tmp_path)
    rec = ClusterRecord("pid", "cam/1", [MemberFrame(0.0, 5, 0), MemberFrame(0.2, 6, 1)])
    fs.put_cluster(rec, b"jpeg")
    assert fs.get_cluster("cam/1", "pid") == rec
    assert fs.get_index_frame("cam/1", "pid") == b"jpeg"
    assert fs.get_cluster("cam/1", "other") is None


def test_retention_by_age_and_size(tmp_path: Path) -> None:
    fs = FrameStore(tmp_path, retention_s=100.0, max_bytes=1024 * 1024)
    fs.put_frame("cam", 10.0, b"x" * 100)  # hour bucket 0
    fs.put_frame("cam", 3600.0 * 2, b"y" * 100)  # hour bucket 2
    fs.put_cluster(ClusterRecord("p", "cam", [MemberFrame(10.0, 0, 0)]), b"idx")
    import time

    assert fs.sweep(now=time.time()) == 0
    assert fs.sweep(now=time.time() + 101) == 2
    assert fs.get_frame("cam", 10.0) is None
    # Retention never touches the cluster layer: the index frame outlives its raw frames.
    assert fs.get_index_frame("cam", "p") == b"idx"

    small = FrameStore(tmp_path / "s", retention_s=1e9, max_bytes=1024 * 1024)
    small.put_frame("cam", 0.0, b"z" * 700_000)
    small.put_frame("cam", 3600.0, b"z" * 700_000)
    assert small.sweep() == 1  # the older bucket goes first, until under max_bytes
    assert small.get_frame("cam", 0.0) is None and small.get_frame("cam", 3600.0) is not None


def test_usage_survives_a_restart(tmp_path: Path) -> None:
    fs = FrameStore(tmp_path)
    for i in range(3):
        fs.put_frame("cam", i * 0.2, b"q" * 10)
    assert FrameStore(tmp_path).raw_usage() == (3, 30)


def test_camera_dir_names_are_safe_and_distinct() -> None:
    assert camera_dir_name("lobby-1") == "lobby-1"
    names = {camera_dir_name(c) for c in ["a/b", "a_b", "..", "", "a b"]}
    assert len(names) == 5
    assert all("/" not in n and n not in {"", ".", ".."} for n in names)


def test_live_frames_use_capture_time() -> None:
    assert frame_time_s(False, 1.5, 9_000_000_000) == 1.5
    assert frame_time_s(True, 1.5, 9_000_000_000) == 9.0


def test_unwritable_root_is_a_clear_error(tmp_path: Path) -> None:
    # A file where the directory should be fails for root too (permission bits would not).
    blocker = tmp_path / "disk"
    blocker.write_bytes(b"")
    with pytest.raises(OSError, match="not writable"):
        FrameStore(blocker / "mem")
