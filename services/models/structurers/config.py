"""Which structurer writes the event, as a discriminated config (`type`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.models.triton import TritonClientSettings


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
