"""Every metric the console emits, defined once."""

from prometheus_client import Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS_S

RECORDS = Counter("vigil_console_records_total", "Alert and evidence records shown", ["topic_kind"])
MALFORMED_RECORDS = Counter(
    "vigil_console_malformed_records_total",
    "Records on the alert or evidence topic that could not be decoded: skipped (dead-lettered), the page stays up",
    ["topic_kind"],
)
DUPLICATE_RECORDS = Counter(
    "vigil_console_duplicate_records_total", "Records for an event id (and evidence kind) already shown", ["topic_kind"]
)
SSE_CLIENTS = Gauge("vigil_console_sse_clients", "Pages connected to the live stream")
ASKS = Counter("vigil_console_asks_total", "Questions sent to reasoning, by outcome", ["outcome"])
ASK_SECONDS = Histogram(
    "vigil_console_ask_seconds", "Time to answer a question from the page", buckets=LATENCY_BUCKETS_S
)
