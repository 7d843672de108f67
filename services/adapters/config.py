"""Settings of the adapter registry (env: VIGIL_ADAPTERS__*, plus the common VIGIL_BUS__*, VIGIL_TOPICS__*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from services.common.config import CommonSettings


class AdaptersConfig(BaseModel):
    """Where bundles are kept, and the address edges are told to fetch them from."""

    model_config = ConfigDict(extra="forbid")

    # The store: <sha256>.bundle files and manifests/ (a persistent volume).
    dir: Path = Path("/var/lib/vigil/adapters")
    # This registry's gRPC address as the edges reach it across the WAN, written into every manifest.
    public_address: str = "127.0.0.1:50054"
    max_bundle_bytes: int = Field(default=1024**3, ge=1024)
    # Bytes per Fetch chunk: small enough to resume cheaply, big enough that HTTP/2 framing is noise.
    chunk_bytes: int = Field(default=1024 * 1024, ge=4096, le=4 * 1024 * 1024)


class AdaptersSettings(CommonSettings):
    """Everything the adapter registry process reads at start-up."""

    adapters: AdaptersConfig = AdaptersConfig()
    grpc_address: str = "0.0.0.0:50054"
