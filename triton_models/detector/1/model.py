"""Triton Python model `detector`: any YOLOv8 detection ONNX, running the in-process OnnxDetector.

Serves the DAT gate (`detector`) and, loaded by ``context_detector/1/model.py``,
the context detector: which weights is the config's business (`weights`, else
the shipped `model`), the class names always come from the ONNX metadata.

Thin on purpose: decoding of the request and the padding of the response are
here; letterbox, the forward pass, decoding and NMS are
``services.models.detectors.onnx_backend.OnnxDetector``, so Triton and the
embedded mode give the same boxes for the same pixels.

The shipped export is static batch 1, so a dynamic batch runs frame by frame
through one session: batching here saves the per-call hand-off between the
server and this stub, not compute. An export with a dynamic batch axis would
let one session.run take the whole batch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


def _parameters(model_config: dict[str, Any]) -> dict[str, str]:
    return {k: str(v.get("string_value", "")) for k, v in model_config.get("parameters", {}).items()}


def _import_vigil(params: dict[str, str]) -> None:
    # The Python backend ignores PYTHONPATH: put the checkout on sys.path from the config (or our location).
    root = params.get("vigil_root") or str(Path(__file__).resolve().parents[3])
    if root not in sys.path:
        sys.path.insert(0, root)


class TritonPythonModel:
    """One OnnxDetector per model instance; one response per request, errors per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the ONNX session named by the `weights` parameter, else the shipped `model` (fall|accident|coco)."""
        params = _parameters(json.loads(args["model_config"]))
        _import_vigil(params)
        from services.models.detectors.base import DetectorError, OnnxDetectorConfig
        from services.models.detectors.onnx_backend import OnnxDetector

        self._bad_input: tuple[type[Exception], ...] = (DetectorError, ValueError)
        settings: dict[str, Any] = {
            "weights": Path(params["weights"]) if params.get("weights") else None,
            "min_confidence": float(params.get("min_confidence") or 0.1),
            "iou_threshold": float(params.get("iou_threshold") or 0.45),
            "intra_op_threads": int(params.get("intra_op_threads") or 0),
        }
        # `weights` wins over `model`; an empty `model` leaves OnnxDetectorConfig's default. Validated
        # like any config, so a misspelt model fails the load with the allowed names.
        if params.get("model"):
            settings["model"] = params["model"]
        self._detector = OnnxDetector(OnnxDetectorConfig.model_validate(settings))
        if params.get("class_names"):
            expected = {int(k): str(v) for k, v in json.loads(params["class_names"]).items()}
            if expected != self._detector.class_names:
                raise ValueError(
                    f"config parameter class_names {expected} does not match the weights' "
                    f"{self._detector.class_names}; re-run scripts/prepare_triton_repo.py"
                )
        self._model_name = args["model_name"]
        labels = {"model": self._model_name, "version": args["model_version"]}
        self._families: list[Any] = []
        self._frames = self._counter("vigil_triton_detector_frames_total", "Frames the detector ran on", labels)
        self._detections = self._counter("vigil_triton_detector_detections_total", "Detections returned", labels)
        self._rejected = self._counter(
            "vigil_triton_detector_rejected_requests_total", "Requests refused as invalid input", labels
        )
        self._logger = pb_utils.Logger
        self._logger.log_info(f"{args['model_name']} ready: {self._detector.name} classes={self._detector.class_names}")

    def _frames_of(self, request: Any) -> list[np.ndarray]:
        raw = pb_utils.get_input_tensor_by_name(request, "IMAGE")
        encoded = pb_utils.get_input_tensor_by_name(request, "IMAGE_ENCODED")
        if (raw is None) == (encoded is None):
            raise ValueError("send exactly one of IMAGE (N x H x W x 3 uint8 BGR) or IMAGE_ENCODED (JPEG/PNG bytes)")
        if raw is not None:
            return list(raw.as_numpy())
        import cv2

        frames = []
        for i, item in enumerate(encoded.as_numpy().reshape(-1)):
            data = bytes(item)
            frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
            if frame is None:
                raise ValueError(f"IMAGE_ENCODED[{i}] ({len(data)} bytes) is not a JPEG or PNG image")
            frames.append(frame)
        return frames

    def _response(self, results: list[list[Any]]) -> Any:
        n = max((len(r) for r in results), default=0)
        boxes = np.zeros((len(results), n, 4), np.float32)
        class_ids = np.full((len(results), n), -1, np.int32)
        scores = np.zeros((len(results), n), np.float32)
        for i, dets in enumerate(results):
            for j, d in enumerate(dets):
                boxes[i, j] = (d.box.x1, d.box.y1, d.box.x2, d.box.y2)
                class_ids[i, j] = d.class_id
                scores[i, j] = d.confidence
        count = np.array([[len(r)] for r in results], np.int32)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("BOXES", boxes),
                pb_utils.Tensor("CLASS_IDS", class_ids),
                pb_utils.Tensor("SCORES", scores),
                pb_utils.Tensor("COUNT", count),
            ]
        )

    def _counter(self, name: str, description: str, labels: dict[str, str]) -> Any:
        # A Metric is only valid while its MetricFamily object lives: keep both.
        family = pb_utils.MetricFamily(name=name, description=description, kind=pb_utils.MetricFamily.COUNTER)
        self._families.append(family)
        return family.Metric(labels=labels)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Detect on every frame of every request; a bad request fails alone with INVALID_ARG."""
        responses = []
        for request in requests:
            try:
                frames = self._frames_of(request)
                results = [self._detector.detect(frame) for frame in frames]
            except self._bad_input as exc:
                self._rejected.increment(1)
                responses.append(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG))
                )
                continue
            except Exception as exc:
                self._logger.log_error(f"{self._model_name} failed: {type(exc).__name__}: {exc}")
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}", pb_utils.TritonError.INTERNAL)
                    )
                )
                continue
            self._frames.increment(len(frames))
            self._detections.increment(sum(len(r) for r in results))
            responses.append(self._response(results))
        return responses

    def finalize(self) -> None:
        """Drop the session."""
        self._detector = None  # type: ignore[assignment]
