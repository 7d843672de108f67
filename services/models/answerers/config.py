"""Which answerer writes the answer, as a discriminated config (`type`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.models.qwen import QwenVLCheckpointConfig
from services.models.triton import TritonClientSettings


class EvidenceAnswererConfig(BaseModel):
    """No VLM: the answer lists the keyframes' times and auxiliary descriptions, and says no VLM ran."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["evidence"] = "evidence"


class QwenVLAnswererConfig(QwenVLCheckpointConfig):
    """Qwen2.5-VL answering from keyframes: one multi-image prompt."""

    type: Literal["qwen2.5-vl"] = "qwen2.5-vl"
    max_new_tokens: int = Field(default=192, ge=8)
    # Keyframes are downscaled so their longer side is at most this (visual tokens grow with pixels).
    max_image_side: int = Field(default=448, ge=28)


class TritonVLMAnswererConfig(TritonClientSettings):
    """The `vlm_answer` model of a Triton server (triton_models/vlm_answer): QwenVLAnswerer runs there."""

    type: Literal["triton-vlm"] = "triton-vlm"
    model_name: str = "vlm_answer"
    # One answer is a free-form generation over several images: on CPU it takes tens of seconds.
    timeout_s: float = Field(default=300.0, gt=0.0)


AnswererConfig = Annotated[
    EvidenceAnswererConfig | QwenVLAnswererConfig | TritonVLMAnswererConfig, Field(discriminator="type")
]
