"""Fair scheduling across cameras: one frame per camera per batch, round-robin, live queues drop the oldest."""

from __future__ import annotations

import pytest

from services.gating.scheduler import FairQueues


def test_a_batch_takes_one_frame_per_camera_whatever_the_backlog() -> None:
    queues: FairQueues[str] = FairQueues()
    for i in range(10):
        queues.put("busy", f"busy{i}", live=False)
    queues.put("quiet", "quiet0", live=False)
    assert sorted(queues.take(8, timeout_s=0)) == ["busy0", "quiet0"]
    # The quiet camera's next frame is served in the next batch, not after the busy one's backlog.
    queues.put("quiet", "quiet1", live=False)
    assert sorted(queues.take(8, timeout_s=0)) == ["busy1", "quiet1"]
    assert queues.pending() == 8


def test_cameras_beyond_the_batch_size_take_turns() -> None:
    queues: FairQueues[str] = FairQueues()
    for round_ in range(3):
        for cam in "abc":
            queues.put(cam, f"{cam}{round_}", live=False)
    batches = [queues.take(2, timeout_s=0) for _ in range(4)]
    served_first = [b[0][0] for b in batches]
    # Each batch starts one camera later: no camera waits behind the others every time.
    assert served_first == ["a", "b", "c", "a"]
    taken = [item for b in batches for item in b]
    assert len(taken) == len(set(taken)) == 8


def test_a_live_camera_drops_its_oldest_frame_a_file_never_drops() -> None:
    queues: FairQueues[int] = FairQueues(live_capacity=2)
    assert [queues.put("live", i, live=True) for i in range(4)] == [None, None, 0, 1]
    assert all(queues.put("file", i, live=False) is None for i in range(4))
    assert queues.dropped() == {"live": 2, "file": 0}
    assert sorted(queues.take(8, timeout_s=0)) == [0, 2]


def test_take_waits_then_gives_up() -> None:
    assert FairQueues[int]().take(4, timeout_s=0.01) == []
    with pytest.raises(ValueError, match="live_capacity"):
        FairQueues[int](live_capacity=0)
