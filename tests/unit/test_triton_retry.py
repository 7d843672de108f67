"""Retry, back-off and deadline logic of services.models.triton, on a fake clock."""

from __future__ import annotations

import numpy as np
import pytest

from services.models.detections import Box, Detection
from services.models.structurers.base import ProducerInfo, StructuringRequest
from services.models.structurers.triton_vlm import (
    producer_from_wire,
    producer_to_wire,
    request_from_wire,
    request_to_wire,
)
from services.models.triton import (
    RetryPolicy,
    TritonDeadlineExceeded,
    call_with_retries,
    is_unavailable,
    status_name,
)
from tests.fakes import FakeClock


class FakeGrpcError(Exception):
    """Shaped like tritonclient's InferenceServerException."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self._code = code

    def status(self) -> str:
        return f"StatusCode.{self._code}"


def run(attempt, clock: FakeClock, deadline_s: float = 10.0, policy: RetryPolicy | None = None):
    return call_with_retries(
        attempt,
        deadline_s=deadline_s,
        policy=policy or RetryPolicy(max_attempts=4, initial_backoff_s=0.1, max_backoff_s=1.0, jitter=0.0),
        clock=clock,
        sleep=clock.sleep,
        uniform=lambda: 0.5,
    )


def test_status_names() -> None:
    assert status_name(FakeGrpcError("UNAVAILABLE")) == "UNAVAILABLE"
    assert status_name(ValueError("x")) == ""
    assert is_unavailable(FakeGrpcError("UNAVAILABLE"))
    assert not is_unavailable(FakeGrpcError("INVALID_ARGUMENT"))


def test_backoff_grows_and_is_capped() -> None:
    p = RetryPolicy(initial_backoff_s=0.1, max_backoff_s=0.5, multiplier=2.0, jitter=0.2)
    assert [p.backoff_s(n) for n in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2, 0.4, 0.5])
    assert p.backoff_s(1, u=0.0) == pytest.approx(0.08) and p.backoff_s(1, u=0.999999) == pytest.approx(0.12)


def test_retries_unavailable_then_succeeds() -> None:
    clock = FakeClock()
    calls: list[float] = []

    def attempt(remaining: float) -> str:
        calls.append(remaining)
        if len(calls) < 3:
            raise FakeGrpcError("UNAVAILABLE")
        return "ok"

    assert run(attempt, clock) == "ok"
    assert clock.sleeps == pytest.approx([0.1, 0.2])
    # Each attempt gets what is left of the overall deadline as its own timeout.
    assert calls == pytest.approx([10.0, 9.9, 9.7])


def test_other_errors_are_not_retried() -> None:
    clock = FakeClock()
    calls = []

    def attempt(remaining: float) -> None:
        calls.append(remaining)
        raise FakeGrpcError("INVALID_ARGUMENT")

    with pytest.raises(FakeGrpcError, match="INVALID_ARGUMENT"):
        run(attempt, clock)
    assert len(calls) == 1 and clock.sleeps == []


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    clock = FakeClock()
    calls = []

    def attempt(remaining: float) -> None:
        calls.append(remaining)
        raise FakeGrpcError("UNAVAILABLE")

    with pytest.raises(FakeGrpcError, match="UNAVAILABLE"):
        run(attempt, clock)
    assert len(calls) == 4 and clock.sleeps == pytest.approx([0.1, 0.2, 0.4])


def test_never_sleeps_past_the_deadline() -> None:
    clock = FakeClock()
    calls = []

    def attempt(remaining: float) -> None:
        calls.append(remaining)
        clock.now += 0.2  # each attempt takes a while before failing
        raise FakeGrpcError("UNAVAILABLE")

    with pytest.raises(FakeGrpcError):
        run(attempt, clock, deadline_s=0.45)
    # 0.2 (try) + 0.1 (back-off) + 0.2 (try) = 0.5 > 0.45: the second back-off would pass the deadline.
    assert len(calls) == 2 and clock.sleeps == pytest.approx([0.1])
    assert clock.now <= 0.5 + 1e-9


def test_no_time_left_is_a_deadline_error() -> None:
    with pytest.raises(TritonDeadlineExceeded):
        run(lambda remaining: None, FakeClock(), deadline_s=0.0)


def test_vlm_wire_format_round_trips() -> None:
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    dets = [Detection(Box(0.5, 1.25, 3.0, 4.0), 1, "Fall", 0.87654321)]
    request = StructuringRequest(image, dets, width=6, height=4, camera_id="cam", extra={"site": "a"})
    wire = request_to_wire(request)
    back = request_from_wire(wire["IMAGE"], bytes(wire["REQUEST"][0]))
    assert back.detections == dets and (back.width, back.height, back.camera_id) == (6, 4, "cam")
    assert dict(back.extra) == {"site": "a"} and np.array_equal(back.boxed_image, image)
    producer = ProducerInfo("qwen2.5-vl", "tiny", True, "note")
    assert producer_from_wire(producer_to_wire(producer)) == producer


@pytest.mark.parametrize(
    ("image", "payload", "match"),
    [
        (np.zeros((0, 0, 3), np.uint8), b'{"width": 1, "height": 1}', "non-empty"),
        (np.zeros((4, 4), np.uint8), b'{"width": 1, "height": 1}', "non-empty"),
        (np.zeros((4, 4, 3), np.uint8), b"not json", "not a valid request JSON"),
        (np.zeros((4, 4, 3), np.uint8), b'{"height": 4}', "not a valid request JSON"),
        (np.zeros((4, 4, 3), np.uint8), b'{"width": 0, "height": 4}', "must be positive"),
    ],
)
def test_vlm_wire_format_rejects_bad_input(image: np.ndarray, payload: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        request_from_wire(image, payload)
