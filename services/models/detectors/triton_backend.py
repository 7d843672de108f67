"""The detector on a Triton server (triton_models/detector) through tritonclient gRPC.

Same interface as the in-process backends; the server runs the same OnnxDetector
code, so results match on the same pixels (send_jpeg trades that exactness for
fewer bytes on the wire). The server is the judge of bad input: an image it
rejects (INVALID_ARGUMENT) is a DetectorError here; an unreachable server or an
unready model is a TritonError, never an empty detection list.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

import cv2
import numpy as np

from services.models.detections import Box, Detection
from services.models.detectors.base import Detector, DetectorError, OnnxDetectorConfig, TritonDetectorConfig
from services.models.triton import TritonModelClient, TritonRequestError
from services.models.triton_python import ServedConfig

__all__ = ["DetectorModelConfig", "TritonDetector", "TritonDetectorConfig"]

log = logging.getLogger(__name__)

OUTPUTS = ("BOXES", "CLASS_IDS", "SCORES", "COUNT")
# triton_models/detector/config.pbtxt's max_batch_size: the most frames one request may carry.
MAX_REQUEST_FRAMES = 8


class DetectorModelConfig(ServedConfig):
    """`vigil_config` of triton_models/detector and context_detector: the in-process OnnxDetector's config."""

    prepare_args: ClassVar[str] = "--models detector[,context_detector]"
    # `weights` (a file) wins over the shipped `model`, as in-process.
    detector: OnnxDetectorConfig
    # From the ONNX metadata at preparation; the model refuses to load when its weights disagree.
    class_names: dict[int, str] | None = None


class TritonDetector(Detector):
    """f_s on Triton: a batch of cameras' frames in one request per size (the dynamic batcher groups the rest)."""

    def __init__(self, config: TritonDetectorConfig, client: TritonModelClient | None = None) -> None:
        self._config = config
        self._client = client or TritonModelClient(config, config.model_name)
        self._client.wait_ready()
        served = DetectorModelConfig.from_parameters(self._client.parameters(), config.model_name)
        self._names = dict(served.class_names or {})
        weights = served.detector.weights.name if served.detector.weights else "default"
        self._name = f"triton:{config.model_name}@{config.url}({weights})"
        log.info("using %s classes=%s", self._name, self._names)

    def close(self) -> None:
        """Close the gRPC channel."""
        self._client.close()

    def _encoded(self, image_bgr: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, self._config.jpeg_quality])
        if not ok:
            raise DetectorError(f"cannot JPEG-encode an image of shape {image_bgr.shape}")
        return buf.tobytes()

    def _inputs(self, images_bgr: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """One request's tensors for frames of one size (raw pixels) or of any size (JPEG)."""
        for image in images_bgr:
            if image.dtype != np.uint8:
                raise DetectorError(f"expected an HxWx3 uint8 BGR image, got dtype {image.dtype}")
        if self._config.send_jpeg and all(image.size for image in images_bgr):
            return {"IMAGE_ENCODED": np.array([[self._encoded(image)] for image in images_bgr], dtype=np.object_)}
        for image in images_bgr:
            if image.ndim != 3:
                # A tensor of the wrong rank never reaches the model: say what was wrong here.
                raise DetectorError(f"expected an HxWx3 uint8 BGR image, got shape {image.shape}")
        return {"IMAGE": np.stack([np.ascontiguousarray(image, dtype=np.uint8) for image in images_bgr])}

    def _infer(self, images_bgr: Sequence[np.ndarray]) -> list[list[Detection]]:
        try:
            out = self._client.infer(self._inputs(images_bgr), OUTPUTS)
        except TritonRequestError as exc:
            if exc.invalid_argument:
                raise DetectorError(exc.message) from exc
            raise
        return [self._decode(out, row) for row in range(len(images_bgr))]

    def _decode(self, out: dict[str, np.ndarray], row: int) -> list[Detection]:
        n = int(out["COUNT"][row, 0])
        dets = []
        for box, cls, score in zip(
            out["BOXES"][row, :n], out["CLASS_IDS"][row, :n], out["SCORES"][row, :n], strict=True
        ):
            if score < self._config.min_confidence:
                continue
            c = int(cls)
            dets.append(Detection(Box(*map(float, box)), c, self._names.get(c, str(c)), float(score)))
        return dets

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Detections above the server's and this config's minimum confidence, best first."""
        return self._infer([image_bgr])[0]

    def detect_batch(self, images_bgr: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Several cameras' frames in as few requests as the model takes: up to MAX_REQUEST_FRAMES each,
        frames of one size together (raw pixels stack only by size; JPEG frames go together whatever their size).
        """
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images_bgr):
            groups.setdefault(() if self._config.send_jpeg and image.size else image.shape, []).append(i)
        out: list[list[Detection]] = [[] for _ in images_bgr]
        for indices in groups.values():
            for k in range(0, len(indices), MAX_REQUEST_FRAMES):
                chunk = indices[k : k + MAX_REQUEST_FRAMES]
                for i, dets in zip(chunk, self._infer([images_bgr[i] for i in chunk]), strict=True):
                    out[i] = dets
        return out
