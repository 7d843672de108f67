"""Every metric the ingest service emits, defined once."""

from prometheus_client import Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS_S

FRAMES_READ = Counter("vigil_ingest_frames_read_total", "Frames decoded from the source")
FRAMES_PUBLISHED = Counter("vigil_ingest_frames_published_total", "Frames published to the frames topic")
CORRUPT_FRAMES = Counter("vigil_ingest_corrupt_frames_total", "Frames skipped because they failed to decode")
ENCODE_SECONDS = Histogram("vigil_ingest_encode_seconds", "JPEG encode time per frame", buckets=LATENCY_BUCKETS_S)
FRAMES_DROPPED = Counter(
    "vigil_ingest_frames_dropped_total",
    "Live frames dropped, oldest first, because the outbox was full while the broker was away",
)
OUTBOX_FRAMES = Gauge("vigil_ingest_outbox_frames", "Encoded frames waiting in the outbox for the broker")
PUBLISH_RETRIES = Counter(
    "vigil_ingest_publish_retries_total", "Batches of frames published again because the broker was away"
)
