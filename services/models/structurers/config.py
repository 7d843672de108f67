"""Which structurer writes the event, as a discriminated config (`type`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.models.qwen import QwenVLCheckpointConfig
from services.models.structurers.event_grammar import event_token_budget
from services.models.triton import TritonClientSettings

# The longest event the decoding grammar allows, plus EOS: a smaller budget could cut an event short, a
# larger one is never used (the grammar ends every event by then). The structurer refuses less.
EVENT_TOKEN_BUDGET = event_token_budget()


class DetectorPriorConfig(BaseModel):
    """Fill the event schema from detections alone (no VLM weights needed)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["detector-prior"] = "detector-prior"


class QwenVLConfig(QwenVLCheckpointConfig):
    """Qwen2.5-VL writing the event: one boxed image, constrained decoding."""

    type: Literal["qwen2.5-vl"] = "qwen2.5-vl"
    max_new_tokens: int = Field(default=EVENT_TOKEN_BUDGET, ge=EVENT_TOKEN_BUDGET)


class TritonVLMConfig(TritonClientSettings):
    """The `vlm` model of a Triton server (triton_models/vlm): Qwen2.5-VL with constrained decoding there."""

    type: Literal["triton-vlm"] = "triton-vlm"
    model_name: str = "vlm"
    # Generation on CPU takes seconds; the deadline covers one event.
    timeout_s: float = Field(default=120.0, gt=0.0)


StructurerConfig = Annotated[DetectorPriorConfig | QwenVLConfig | TritonVLMConfig, Field(discriminator="type")]
