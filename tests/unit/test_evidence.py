"""Draw and Crop (DAT section 3.2.1) and the byte costs they produce."""

import cv2
import numpy as np

from services.gating.evidence import crop, draw_boxes, make_evidence
from services.models.detections import Box, Detection


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)


def test_draw_changes_only_near_the_box() -> None:
    img = np.zeros((240, 320, 3), np.uint8)
    out = draw_boxes(img, [Detection(Box(100, 100, 200, 200), 1, "Fall", 0.9)], {"Fall"})
    assert out.shape == img.shape and img.sum() == 0  # input untouched
    assert out[150, 100].tolist() == [0, 0, 255]  # severe boxes are red (BGR)
    assert out[10:60, 250:].sum() == 0


def test_crop_is_padded_and_clipped() -> None:
    img = _image()
    c = crop(img, Detection(Box(300, 200, 330, 260), 0, "Normal", 0.5), pad_frac=0.1)
    assert c.shape[1] <= 320 - 297 and c.shape[0] <= 240 - 194
    tiny = crop(img, Detection(Box(10, 10, 11, 11), 0, "Normal", 0.5))
    assert tiny.shape[0] >= 16 and tiny.shape[1] >= 16


def test_evidence_picks_severe_roi_and_sizes_are_real() -> None:
    img = _image()
    dets = [
        Detection(Box(0, 0, 40, 40), 0, "Normal", 0.9),
        Detection(Box(100, 100, 250, 220), 1, "Fall", 0.6),
    ]
    ev = make_evidence(img, dets, {"Fall"})
    assert ev.roi_detection.label == "Fall"
    roi = cv2.imdecode(np.frombuffer(ev.roi_jpeg, np.uint8), cv2.IMREAD_COLOR)
    box = cv2.imdecode(np.frombuffer(ev.box_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert box.shape == img.shape and roi.shape[0] > 100
    assert len(ev.roi_jpeg) < len(ev.box_jpeg)
