"""Settings of the ingest service (env: VIGIL_INGEST__*)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.common.config import CommonSettings


class IngestConfig(BaseModel):
    """Which source to read and how to sample it."""

    model_config = ConfigDict(extra="forbid")

    source: str = ""
    camera_id: str = "cam0"
    # Frames per second to publish; 0 = every frame of the source; unset = 5 for a video or
    # stream, 1 for an image folder or %d pattern (which plays every image at this rate).
    fps: float | None = Field(default=None, ge=0.0)
    jpeg_quality: int = Field(default=90, ge=10, le=100)
    # Largest side of a published frame in pixels; 0 = keep the source size.
    max_side: int = Field(default=1280, ge=0)
    open_timeout_s: float = Field(default=10.0, gt=0)
    # Pace a file at its own frame rate, as a live camera would deliver it.
    realtime: bool = False
    # Encoded frames held while the broker is away (services/ingest/outbox.py): a file's reading pauses
    # when they are all taken, a live camera drops its oldest. 250 frames: 50 s at 5 fps, ~25-75 MB of JPEG.
    outbox_frames: int = Field(default=250, ge=1)
    # How long ingest waits for an unreachable broker before it gives up and exits non-zero (to be restarted).
    broker_wait_s: float = Field(default=600.0, gt=0)


class IngestSettings(CommonSettings):
    """Everything the ingest process reads at start-up."""

    ingest: IngestConfig = IngestConfig()
