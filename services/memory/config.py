"""Settings of the memory service (env: VIGIL_MEMORY__*, plus the common VIGIL_BUS__*, VIGIL_TOPICS__*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from services.common.config import CommonSettings
from services.memory.store import QdrantEdgeStoreConfig, VectorStoreConfig
from services.models.embedders.base import AuxMiniLMEmbedderConfig, EmbedderConfig


class FrameStoreConfig(BaseModel):
    """The raw data layer: every sampled frame as a JPEG on disk, bounded by age and size."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Path("var/memory/frames")
    # Raw frames older than this (by the time they were written) are deleted; index frames are kept.
    retention_s: float = Field(default=7 * 86400.0, gt=0.0)
    # ... and the oldest go first once the raw layer is larger than this.
    max_bytes: int = Field(default=20 * 1024**3, ge=1024 * 1024)
    sweep_interval_s: float = Field(default=60.0, gt=0.0)


class RetrievalConfig(BaseModel):
    """Venus IV-D defaults: temperature, AKR threshold and lower bound, and the budget behind N_max."""

    model_config = ConfigDict(extra="forbid")

    # Eq. 5. The paper's value did not survive extraction. With thousands of index frames the
    # background's mass adds up: at T = 0.1 only 28-42% of the probability fell on relevant frames in
    # make bench-retrieve's synthetic memory of 2,000, at T = 0.05 84-96% (a 0.05 gap = factor e).
    temperature: float = Field(default=0.05, gt=0.0)
    # Eq. 6 stopping threshold on the chosen index frames' cumulative probability.
    theta: float = Field(default=0.8, gt=0.0, le=1.0)
    # Eq. 7: N_min = ceil(lam * N_max).
    lam: float = Field(default=0.25, ge=0.0, le=1.0)
    # N_max = min(cap, uplink bandwidth x latency budget / mean keyframe size); Venus evaluates 32.
    max_frames_cap: int = Field(default=32, ge=1, le=256)
    uplink_bytes_per_s: float = Field(default=1.25e6, gt=0.0)
    latency_budget_s: float = Field(default=2.0, gt=0.0)
    mean_frame_bytes: float = Field(default=60_000.0, gt=0.0)
    # Which named vector a question is matched against; "" = the first the embedder offers for text.
    vector: str = ""
    # RAM for the exact score index (services/memory/score_index.py): 4 B x dim + ~220 B per index frame,
    # 1.76 kB at 384-d, so the default 2 GiB holds ~1.2M index frames. A memory past it is refused at start.
    score_index_max_bytes: int = Field(default=2 * 1024**3, ge=1024 * 1024)

    def n_max(self) -> int:
        """The upper bound on keyframes from the bandwidth and the latency budget."""
        from services.memory.sampling import max_frames_for_budget

        return max_frames_for_budget(
            self.uplink_bytes_per_s, self.latency_budget_s, self.mean_frame_bytes, self.max_frames_cap
        )


class MemoryConfig(BaseModel):
    """Where the memory lives and how it is queried."""

    model_config = ConfigDict(extra="forbid")

    store: VectorStoreConfig = QdrantEdgeStoreConfig(path=Path("var/memory/qdrant"))
    frames: FrameStoreConfig = FrameStoreConfig()
    # Must be the indexing service's embedder: the memory embeds questions into the same space.
    embedder: EmbedderConfig = AuxMiniLMEmbedderConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    max_question_chars: int = Field(default=2000, ge=16)
    # Retrieve calls in flight at once; more are refused with RESOURCE_EXHAUSTED, not queued.
    max_concurrent_retrieve: int = Field(default=8, ge=1, le=256)
    # Free space kept on the memory's volumes: below it the oldest raw frames go first, then new frames and
    # clusters are refused (counted) rather than written into a full disk, where Qdrant Edge's memory-mapped
    # files end the process with SIGBUS. 0 turns the check off.
    min_free_bytes: int = Field(default=512 * 1024**2, ge=0)
    frames_consumer_group: str = "vigil-memory-frames"
    index_consumer_group: str = "vigil-memory-index"


class MemorySettings(CommonSettings):
    """Everything the memory process reads at start-up."""

    memory: MemoryConfig = MemoryConfig()
    grpc_address: str = "0.0.0.0:50052"
