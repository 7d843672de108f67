"""Settings of the gating service (env: VIGIL_GATING__*, plus the common VIGIL_BUS__*, VIGIL_TOPICS__*)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.config import BusConfig, CommonSettings, GrpcClientSecurity
from services.common.images import MAX_IMAGE_PIXELS
from services.models.detectors.base import DetectorConfig, OnnxDetectorConfig
from services.models.detectors.profiles import Profile, apply_profile
from services.models.structurers.config import DetectorPriorConfig, StructurerConfig

# What each profile sets when the settings leave it out. A profile is a set of defaults, not a lock:
# any field given explicitly (environment, flags, Helm values) wins over it.
PROFILES: dict[str, dict[str, Any]] = {
    # DAT's domain: our accident detector gates; COCO YOLOv8n gives the vehicles and people around it.
    "traffic": {
        "detector": {"type": "onnx", "model": "accident"},
        "context_detector": {"type": "onnx", "model": "coco", "min_confidence": 0.3},
        "target_classes": "accident",
        "severe_classes": "accident",
    },
    # The YOLOv8s Normal/Fall person model; no context detector.
    "people": {
        "detector": {"type": "onnx", "model": "fall"},
        "context_detector": None,
        "target_classes": "Fall",
        "severe_classes": "Fall",
    },
}


class AdapterUpdatesConfig(BaseModel):
    """LoRA adapters published by the cloud, swapped into the running Qwen2.5-VL structurer (DAT section 3.1)."""

    model_config = ConfigDict(extra="forbid")

    # The local store: installed versions and state.json (a volume, so a restart keeps the live adapter).
    dir: Path
    # The cloud Kafka that carries the adapters topic; None = the edge bus (single-site deployments).
    cloud_bus: BusConfig | None = None
    # The registry's gRPC address as this edge reaches it; "" = the address the manifest announces.
    registry: str = ""
    # TLS and a token for Fetch from the registry; None: plaintext.
    registry_security: GrpcClientSecurity | None = None
    # Every replica needs every adapter, so each has its own group: "" = vigil-gating-adapters-<hostname>.
    consumer_group: str = ""
    # Resumed fetches of one bundle before the manifest is retried from scratch.
    fetch_attempts: int = Field(default=5, ge=1)
    fetch_timeout_s: float = Field(default=600.0, gt=0.0)


class GatingConfig(BaseModel):
    """DAT gate, incident grouping and structurer settings; defaults follow the paper where it gives one."""

    model_config = ConfigDict(extra="forbid")

    # `traffic` (default): accident detector + COCO context; `people`: the fall detector. See PROFILES.
    profile: Profile = "traffic"
    detector: DetectorConfig = OnnxDetectorConfig(model="accident")
    # Runs on gated frames only: the vehicles and people in and around the incident (None: no context).
    context_detector: DetectorConfig | None = None
    structurer: StructurerConfig = DetectorPriorConfig()
    # None: the structurer keeps the adapter it started with. Needs the qwen2.5-vl structurer.
    adapters: AdapterUpdatesConfig | None = None
    # DAT sets the detector's confidence threshold to 0.25 (section 4.1.1): tau_low of section 4.2.1.
    tau_g: float = Field(default=0.25, gt=0.0, le=1.0)
    # DAT 4.2.1's routing threshold: a frame with s_t >= tau_high is a confident detection whose event is
    # written from the detector's priors at once; only tau_g <= s_t < tau_high goes to the MLLM.
    tau_high: float = Field(default=0.8, gt=0.0, le=1.0)
    # Classes that make a frame an incident; "*" = every class. Set by the profile.
    target_classes: str = "accident"
    severe_classes: str = "accident"
    # A context object is involved when it overlaps the incident box grown by this fraction of its size.
    context_margin: float = Field(default=0.25, ge=0.0, le=2.0)
    # Eq. 4 boundary between priority levels 0 and 1.
    gamma: float = Field(default=0.5, gt=0.0, lt=1.0)
    incident_iou: float = Field(default=0.3, ge=0.0, le=1.0)
    incident_cooldown_s: float = Field(default=5.0, ge=0.0)
    motion_gate: bool = True
    # Mean absolute grey-level change that makes the detector run: over the whole thumbnail, and
    # in any one cell of a 4x4 grid (a change in one part of a fixed camera's view).
    motion_threshold: float = Field(default=2.0, ge=0.0)
    motion_local_threshold: float = Field(default=8.0, ge=0.0)
    # The detector sees every camera at least every N frames and every N seconds of stream time:
    # 1 s, DAT's scheduling interval, so no incident waits longer than one uplink interval to be seen.
    motion_max_skip: int = Field(default=30, ge=0)
    motion_max_skip_s: float = Field(default=1.0, ge=0.0)
    jpeg_quality: int = Field(default=85, ge=10, le=100)
    # Detect() rejects larger images.
    max_image_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # ... and images that would decode to more pixels than this (read from the header, before decoding: a
    # 389 kB PNG can decode to 20000x20000, 1.2 GB of BGR). 36 MP holds an 8K UHD frame (33.2 MP).
    max_image_pixels: int = Field(default=MAX_IMAGE_PIXELS, ge=1)
    # Detect() calls in flight at once; more are refused with RESOURCE_EXHAUSTED, not queued.
    max_concurrent_detect: int = Field(default=4, ge=1, le=256)
    consumer_group: str = "vigil-gating"
    # Where each camera's open incidents are checkpointed after every gated batch (services/gating/checkpoint.py),
    # so that a restarted gating never alerts an incident twice: a volume in a deployment. None: in memory only
    # (a restart mid-incident may alert it again).
    state_dir: Path | None = None
    # Frames gated together, at most one per camera, taken round-robin from per-camera queues
    # (services/gating/scheduler.py); 1 = each frame is gated as it arrives, in topic order.
    max_batch: int = Field(default=8, ge=1)
    # A live camera's frames waiting beyond this many drop the oldest (a file's frames never drop). Short,
    # because under overload a frame waits up to this many of its camera's turns: 2 keeps a gated frame's
    # wait near one round over the cameras instead of four.
    live_buffer: int = Field(default=2, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any) -> Any:
        return apply_profile(data, PROFILES) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _thresholds(self) -> GatingConfig:
        if self.tau_high < self.tau_g:
            raise ValueError(f"tau_high ({self.tau_high}) must be >= tau_g ({self.tau_g})")
        return self


class GatingSettings(CommonSettings):
    """Everything the gating process reads at start-up."""

    gating: GatingConfig = Field(default_factory=GatingConfig)
    grpc_address: str = "0.0.0.0:50051"
