"""Visual evidence for a triggered frame: the boxed image Draw(I_t, D+_t) and ROI crops (DAT section 3.2.1)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from services.models.detections import Detection

_SEVERE_COLOUR = (0, 0, 255)
_OTHER_COLOUR = (0, 200, 0)


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    """JPEG-encode a BGR image."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for image of shape {image.shape}")
    return buf.tobytes()


def draw_boxes(image: np.ndarray, detections: Sequence[Detection], severe: Collection[str] = ()) -> np.ndarray:
    """A copy of `image` with each detection's box and 'label confidence' drawn on it."""
    out = image.copy()
    h, w = out.shape[:2]
    thickness = max(1, round(min(h, w) / 300))
    for d in detections:
        b = d.box.clip(w, h)
        colour = _SEVERE_COLOUR if d.label in severe else _OTHER_COLOUR
        p1, p2 = (int(b.x1), int(b.y1)), (int(b.x2), int(b.y2))
        cv2.rectangle(out, p1, p2, colour, thickness)
        text = f"{d.label} {d.confidence:.2f}"
        scale = 0.4 * thickness
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = max(int(b.y1), th + 2)
        cv2.rectangle(out, (p1[0], ty - th - 2), (p1[0] + tw, ty), colour, -1)
        cv2.putText(out, text, (p1[0], ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def crop(image: np.ndarray, detection: Detection, pad_frac: float = 0.1, min_side: int = 16) -> np.ndarray:
    """Crop(I_t, R): the detection's box grown by `pad_frac` on each side, clipped to the frame."""
    h, w = image.shape[:2]
    b = detection.box
    pw, ph = (b.x2 - b.x1) * pad_frac, (b.y2 - b.y1) * pad_frac
    x1, y1 = int(max(0, b.x1 - pw)), int(max(0, b.y1 - ph))
    x2, y2 = int(min(w, b.x2 + pw)), int(min(h, b.y2 + ph))
    if x2 - x1 < min_side:
        cx = (x1 + x2) // 2
        x1, x2 = max(0, cx - min_side // 2), min(w, cx + min_side // 2)
    if y2 - y1 < min_side:
        cy = (y1 + y2) // 2
        y1, y2 = max(0, cy - min_side // 2), min(h, cy + min_side // 2)
    return image[y1:y2, x1:x2].copy()


@dataclass(frozen=True)
class EncodedEvidence:
    """The boxed image and the one representative ROI, JPEG-encoded (their lengths are c_box and c_roi)."""

    box_jpeg: bytes
    roi_jpeg: bytes
    roi_detection: Detection
    boxed_image: np.ndarray


def make_evidence(
    image: np.ndarray,
    valid: Sequence[Detection],
    severe: Collection[str],
    jpeg_quality: int = 85,
) -> EncodedEvidence:
    """Draw and crop D+_t; keep one ROI per event as DAT does (severe first, then the smallest encoding)."""
    if not valid:
        raise ValueError("make_evidence needs at least one valid detection")
    boxed = draw_boxes(image, valid, severe)
    box_jpeg = encode_jpeg(boxed, jpeg_quality)
    rois = [(d, encode_jpeg(crop(image, d), jpeg_quality)) for d in valid]
    rois.sort(key=lambda r: (r[0].label not in severe, len(r[1])))
    roi_det, roi_jpeg = rois[0]
    return EncodedEvidence(box_jpeg=box_jpeg, roi_jpeg=roi_jpeg, roi_detection=roi_det, boxed_image=boxed)
