"""Which structurer writes the event, as a discriminated config (`type`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.models.qwen import QwenVLCheckpointConfig
from services.models.triton import TritonClientSettings


class DetectorPriorConfig(BaseModel):
    """Fill the event schema from detections alone (no VLM weights needed)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["detector-prior"] = "detector-prior"


class QwenVLConfig(QwenVLCheckpointConfig):
    """Qwen2.5-VL writing the event: one boxed image, constrained decoding."""

    type: Literal["qwen2.5-vl"] = "qwen2.5-vl"
    max_new_tokens: int = Field(default=256, ge=16)


class TritonVLMConfig(TritonClientSettings):
    """The `vlm` model of a Triton server (triton_models/vlm): Qwen2.5-VL with constrained decoding there."""

    type: Literal["triton-vlm"] = "triton-vlm"
    model_name: str = "vlm"
    # Generation on CPU takes seconds; the deadline covers one event.
    timeout_s: float = Field(default=120.0, gt=0.0)


StructurerConfig = Annotated[DetectorPriorConfig | QwenVLConfig | TritonVLMConfig, Field(discriminator="type")]
