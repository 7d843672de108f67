"""Every metric the memory service emits, defined once."""

from prometheus_client import Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS_S

RAW_FRAMES = Counter("vigil_memory_raw_frames_total", "Raw frames written to the frame store")
INDEX_POINTS = Counter("vigil_memory_index_points_total", "Index points (closed clusters) upserted")
WRITE_ERRORS = Counter(
    "vigil_memory_write_errors_total", "Writes that failed and will be retried or dead-lettered", ["kind"]
)
INDEX_LAG = Histogram(
    "vigil_memory_index_lag_seconds", "Cluster closed -> searchable", buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
)
RETRIEVE_SECONDS = Histogram("vigil_memory_retrieve_seconds", "Retrieve latency", ["mode"], buckets=LATENCY_BUCKETS_S)
RETRIEVE_FRAMES = Histogram(
    "vigil_memory_retrieve_keyframes", "Keyframes per Retrieve", ["mode"], buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)
RETRIEVE_ERRORS = Counter("vigil_memory_retrieve_errors_total", "Retrieve calls that failed", ["code"])
RAW_BYTES = Gauge("vigil_memory_raw_bytes", "Bytes in the raw frame layer")
EXPIRED_BUCKETS = Counter("vigil_memory_expired_buckets_total", "Raw-frame hour buckets deleted by retention")
SCORE_INDEX_POINTS = Gauge("vigil_memory_score_index_points", "Index frames held in the in-RAM score index")
SCORE_INDEX_BYTES = Gauge(
    "vigil_memory_score_index_bytes", "RAM the score index takes (memory.retrieval.score_index_max_bytes bounds it)"
)
DISK_FREE_BYTES = Gauge("vigil_memory_disk_free_bytes", "Free bytes on the fullest of the memory's volumes")
REFUSED_WRITES = Counter(
    "vigil_memory_refused_writes_total",
    "Frames and clusters not stored because the memory's volume was under memory.min_free_bytes",
    ["kind"],
)
STORAGE_DEGRADED = Gauge(
    "vigil_memory_storage_degraded", "1 while writes are refused for lack of disk space (memory.min_free_bytes)"
)
EVICTED_BYTES = Counter(
    "vigil_memory_evicted_bytes_total", "Raw-frame bytes deleted early to keep the memory's volume above its floor"
)
