"""Settings of the reasoning service (env: VIGIL_REASONING__*)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.common.config import CommonSettings, GrpcClientSecurity
from services.models.answerers.config import AnswererConfig, EvidenceAnswererConfig


class ReasoningConfig(BaseModel):
    """Where the edge memory is, and which VLM answers."""

    model_config = ConfigDict(extra="forbid")

    # The edge memory service's gRPC endpoint, as reachable from the cloud.
    memory_address: str = "127.0.0.1:50052"
    # TLS (a client certificate for mTLS) and a token for Retrieve across the WAN; None: plaintext.
    memory_security: GrpcClientSecurity | None = None
    # Deadline of one Retrieve (keyframes included) across the WAN.
    memory_timeout_s: float = Field(default=15.0, gt=0.0)
    vlm: AnswererConfig = EvidenceAnswererConfig()
    max_question_chars: int = Field(default=2000, ge=16)
    # Ask calls in flight at once (each holds a Retrieve and a VLM call); more get RESOURCE_EXHAUSTED.
    max_concurrent_ask: int = Field(default=4, ge=1, le=256)


class ReasoningSettings(CommonSettings):
    """Everything the reasoning process reads at start-up."""

    reasoning: ReasoningConfig = ReasoningConfig()
    grpc_address: str = "0.0.0.0:50053"
