"""Every metric the indexing service emits, defined once."""

from prometheus_client import Counter, Histogram

from services.common.metrics import LATENCY_BUCKETS_S

FRAMES = Counter("vigil_indexing_frames_total", "Frames segmented and clustered")
CORRUPT_FRAMES = Counter("vigil_indexing_corrupt_frames_total", "Frames whose payload could not be decoded")
SCENES = Counter("vigil_indexing_scenes_total", "Scene boundaries", ["forced"])
CLUSTERS = Counter("vigil_indexing_clusters_total", "Clusters closed and published as index entries")
CONTENT_CHECKS = Counter(
    "vigil_indexing_content_checks_total", "Detector runs that decided whether a cluster splits (content split)"
)
STAGE_SECONDS = Histogram(
    "vigil_indexing_stage_seconds", "Time per indexing stage", ["stage"], buckets=LATENCY_BUCKETS_S
)
