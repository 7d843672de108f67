"""Every metric the gating service emits, defined once."""

from prometheus_client import Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS_S

FRAMES = Counter("vigil_gating_frames_total", "Frames received by the gate")
DETECTOR_SKIPPED = Counter("vigil_gating_detector_skipped_total", "Frames the motion pre-gate kept from the detector")
GATED = Counter("vigil_gating_frames_gated_total", "Frames with g_t = 1")
# Per camera, for frames/s per camera and the "camera silent" alert; one series per camera id.
CAMERA_FRAMES = Counter("vigil_gating_camera_frames_total", "Frames received by the gate, per camera", ["camera"])
EVENTS = Counter("vigil_gating_events_total", "Structured events published", ["level"])
INVALID_OUTPUT = Counter("vigil_gating_invalid_model_output_total", "Structurer outputs rejected by validation")
CORRUPT_FRAMES = Counter("vigil_gating_corrupt_frames_total", "Frames whose payload could not be decoded")
STAGE_SECONDS = Histogram("vigil_gating_stage_seconds", "Time per gating stage", ["stage"], buckets=LATENCY_BUCKETS_S)
ROUTED = Counter(
    "vigil_gating_structured_total",
    "Events structured, by route: mllm (tau_g <= s_t < tau_high) or confident (s_t >= tau_high, detector priors)",
    ["route"],
)
ADAPTER_LIVE = Gauge(
    "vigil_gating_adapter_live",
    "1 for the LoRA adapter version the structurer writes events with ('' = the base model), 0 for the others",
    ["version"],
)
ADAPTER_SWAPS = Counter("vigil_gating_adapter_swaps_total", "Adapter swaps (installs and rollbacks)")
ADAPTER_REFUSED = Counter(
    "vigil_gating_adapter_refused_total",
    "Adapter bundles refused: checksum, format, base_model or weights",
    ["reason"],
)
DROPPED = Counter(
    "vigil_gating_frames_dropped_total", "Live frames dropped, oldest first, when a camera's queue was full"
)
BATCH_FRAMES = Histogram(
    "vigil_gating_batch_frames", "Frames per detector batch (one per camera)", buckets=(1, 2, 4, 8, 16, 32, 64)
)
REPLAYED_SKIPPED = Counter(
    "vigil_gating_frames_replayed_skipped_total",
    "Re-delivered frames not gated again: the incident checkpoint already reflects them (after a restart)",
)
CHECKPOINTS_RESTORED = Counter(
    "vigil_gating_checkpoints_restored_total",
    "Cameras whose open incidents were restored from the incident checkpoint at start-up",
)
