"""Settings of the gating service (env: VIGIL_GATING__*, plus the common VIGIL_BUS__*, VIGIL_TOPICS__*)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common.config import CommonSettings
from services.common.triton import TritonClientSettings
from services.gating.detectors.base import DetectorConfig, OnnxDetectorConfig


class DetectorPriorConfig(BaseModel):
    """Fill the event schema from detections alone (no VLM weights needed)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["detector-prior"] = "detector-prior"


class QwenVLConfig(BaseModel):
    """Qwen2.5-VL (optionally with a LoRA adapter) from a local checkpoint directory."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["qwen2.5-vl"] = "qwen2.5-vl"
    checkpoint: Path
    lora: Path | None = None
    device: str = "cpu"
    max_new_tokens: int = Field(default=256, ge=16)


class TritonVLMConfig(TritonClientSettings):
    """The `vlm` model of a Triton server (triton_models/vlm): Qwen2.5-VL with constrained decoding there."""

    type: Literal["triton-vlm"] = "triton-vlm"
    model_name: str = "vlm"
    # Generation on CPU takes seconds; the deadline covers one event.
    timeout_s: float = Field(default=120.0, gt=0.0)


StructurerConfig = Annotated[DetectorPriorConfig | QwenVLConfig | TritonVLMConfig, Field(discriminator="type")]


class GatingConfig(BaseModel):
    """DAT gate, incident grouping and structurer settings; defaults follow the paper where it gives one."""

    model_config = ConfigDict(extra="forbid")

    detector: DetectorConfig = OnnxDetectorConfig()
    structurer: StructurerConfig = DetectorPriorConfig()
    # DAT sets the detector's confidence threshold to 0.25 (section 4.1.1).
    tau_g: float = Field(default=0.25, gt=0.0, le=1.0)
    # Classes that make a frame an incident; "*" = every class. The shipped model: Normal, Fall.
    target_classes: str = "Fall"
    severe_classes: str = "Fall"
    # Eq. 4 boundary between priority levels 0 and 1.
    gamma: float = Field(default=0.5, gt=0.0, lt=1.0)
    incident_iou: float = Field(default=0.3, ge=0.0, le=1.0)
    incident_cooldown_s: float = Field(default=5.0, ge=0.0)
    motion_gate: bool = True
    motion_threshold: float = Field(default=2.0, ge=0.0)
    motion_max_skip: int = Field(default=30, ge=0)
    jpeg_quality: int = Field(default=85, ge=10, le=100)
    # Detect() rejects larger images.
    max_image_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    consumer_group: str = "vigil-gating"


class GatingSettings(CommonSettings):
    """Everything the gating process reads at start-up."""

    gating: GatingConfig = GatingConfig()
    grpc_address: str = "0.0.0.0:50051"
