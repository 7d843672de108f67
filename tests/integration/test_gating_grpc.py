"""The gating gRPC server on port 0: health, reflection, Detect, and bad requests."""

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.gating.bootstrap import build_gater
from services.gating.config import GatingConfig
from services.gating.grpc_server import SERVICE_NAME, create_server
from tests.fixtures.media import bus_jpg
from vigil.detection.v1 import detection_pb2, detection_pb2_grpc

MAX_BYTES = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def channel():
    # The fall model sees the people of bus.jpg; every class counts, so Detect has something to gate.
    gater = build_gater(GatingConfig(profile="people", target_classes="*"))
    server, port, _ = create_server("127.0.0.1:0", gater, MAX_BYTES)
    server.start()
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield ch
    ch.close()
    server.stop(0)


def test_health_serving(channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ["", SERVICE_NAME]:
        resp = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_detect_on_real_image(channel) -> None:
    stub = detection_pb2_grpc.GatingServiceStub(channel)
    resp = stub.Detect(detection_pb2.DetectRequest(image=bus_jpg().read_bytes(), tau_g=0.5), timeout=30)
    assert resp.gated and resp.trigger_score >= 0.5
    assert len(resp.valid_detections) >= 3
    assert all(d.confidence >= 0.5 for d in resp.valid_detections)
    assert resp.model.startswith("onnx:") and resp.tau_g == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        (b"", "image is empty"),
        (b"definitely not a jpeg", "cannot decode image"),
        (b"\xff" * (MAX_BYTES + 1), "over the"),
    ],
)
def test_bad_images_are_invalid_argument(channel, image: bytes, fragment: str) -> None:
    stub = detection_pb2_grpc.GatingServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Detect(detection_pb2.DetectRequest(image=image), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in err.value.details()


def test_tiny_image_and_bad_tau(channel) -> None:
    stub = detection_pb2_grpc.GatingServiceStub(channel)
    _, png = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(grpc.RpcError) as err:
        stub.Detect(detection_pb2.DetectRequest(image=png.tobytes()), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "too small" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.Detect(detection_pb2.DetectRequest(image=bus_jpg().read_bytes(), tau_g=1.5), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "tau_g" in err.value.details()
