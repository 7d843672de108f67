"""Admission control on real gRPC servers (port 0): pixel bombs refused unread, busy methods refuse at once,
and a client's deadline bounds the work done on its behalf."""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from services.gating.bootstrap import build_gater
from services.gating.config import GatingConfig
from services.gating.grpc_server import create_server as gating_server
from services.models.answerers.base import EvidenceAnswerer
from services.models.detectors.base import Detection, Detector, build_detector
from services.reasoning.grpc_server import create_server as reasoning_server
from services.reasoning.reasoner import GrpcMemory, Reasoner
from tests.fixtures.media import bus_jpg
from vigil.detection.v1 import detection_pb2, detection_pb2_grpc
from vigil.reasoning.v1 import reasoning_pb2, reasoning_pb2_grpc


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A small PNG declaring width x height: a few compressed black rows, the rest missing (a bomb's shape)."""
    rows = zlib.compress(b"\x00" * (1 + 3 * width) * 4, 9)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


class HeldDetector(Detector):
    """The real detector behind a gate the test opens: a Detect that stays in flight until released."""

    def __init__(self, inner: Detector) -> None:
        self._inner = inner
        self._name, self._names = inner.name, inner.class_names
        self.entered = threading.Event()
        self.release = threading.Event()

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        self.entered.set()
        self.release.wait(30)
        return self._inner.detect(image_bgr)


@pytest.fixture(scope="module")
def held() -> Iterator[tuple[str, HeldDetector]]:
    config = GatingConfig(profile="people", target_classes="*", motion_gate=False)
    detector = HeldDetector(build_detector(config.detector))
    server, port, _ = gating_server(
        "127.0.0.1:0",
        build_gater(config, detector),
        2 * 1024 * 1024,
        max_image_pixels=4_000_000,
        max_concurrent_detect=1,
    )
    server.start()
    yield f"127.0.0.1:{port}", detector
    detector.release.set()
    server.stop(0)


def test_an_image_that_would_decode_too_large_is_refused_from_its_header(held: tuple[str, HeldDetector]) -> None:
    address, detector = held
    detector.release.set()
    with grpc.insecure_channel(address) as ch:
        stub = detection_pb2_grpc.GatingServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.Detect(detection_pb2.DetectRequest(image=png_header(20000, 20000)), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "20000x20000 = 400.0 MP, over the 4 MP limit" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            stub.Detect(detection_pb2.DetectRequest(image=png_header(3000, 2000)), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "3000x2000 = 6.0 MP, over the 4 MP limit" in err.value.details()
        # A real image under the limit is served.
        assert stub.Detect(detection_pb2.DetectRequest(image=bus_jpg().read_bytes()), timeout=30).model


def test_a_busy_detect_refuses_the_next_call_at_once(held: tuple[str, HeldDetector]) -> None:
    address, detector = held
    detector.release.clear()
    detector.entered.clear()
    image = bus_jpg().read_bytes()
    with grpc.insecure_channel(address) as ch:
        stub = detection_pb2_grpc.GatingServiceStub(ch)
        first = stub.Detect.future(detection_pb2.DetectRequest(image=image), timeout=60)
        assert detector.entered.wait(30), "the first Detect never reached the detector"
        with pytest.raises(grpc.RpcError) as err:
            stub.Detect(detection_pb2.DetectRequest(image=image), timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit of 1 concurrent calls (gating.max_concurrent_detect)" in err.value.details()
        detector.release.set()
        assert first.result().model
        # The slot is free again.
        assert stub.Detect(detection_pb2.DetectRequest(image=image), timeout=30).model


def test_ask_bounds_its_retrieve_by_the_clients_deadline() -> None:
    """A memory that accepts connections but never answers: with a 60 s memory deadline configured, an Ask
    sent with 1.5 s must free its only slot after ~1.5 s, not hold it for 60 s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        memory = GrpcMemory(f"127.0.0.1:{silent.getsockname()[1]}", timeout_s=60.0)
        server, port, _ = reasoning_server("127.0.0.1:0", Reasoner(memory, EvidenceAnswerer()), max_concurrent_ask=1)
        server.start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = reasoning_pb2_grpc.ReasoningServiceStub(ch)
                with pytest.raises(grpc.RpcError) as err:
                    stub.Ask(reasoning_pb2.AskRequest(question="a car?"), timeout=1.5)
                assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                # Admitted again (it times out at the memory, not at the door) well before 60 s.
                deadline = time.monotonic() + 20
                codes = []
                while time.monotonic() < deadline:
                    with pytest.raises(grpc.RpcError) as again:
                        stub.Ask(reasoning_pb2.AskRequest(question="a car?"), timeout=1.5)
                    codes.append(again.value.code())
                    if codes[-1] != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        break
                assert codes[-1] == grpc.StatusCode.DEADLINE_EXCEEDED, codes
        finally:
            server.stop(0)
            memory.close()
