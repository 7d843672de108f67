"""Every metric the notifier service emits, defined once. Webhooks are labelled by name, never URL."""

from prometheus_client import Counter, Histogram

from services.common.metrics import LATENCY_BUCKETS_S

ALERTS = Counter(
    "vigil_notifier_alerts_total",
    "Alert records read, by outcome: delivered (every webhook), duplicate, malformed, dead_lettered",
    ["outcome"],
)
DELIVERIES = Counter(
    "vigil_notifier_deliveries_total",
    "Alerts per webhook by outcome: delivered, or failed (retries exhausted or a permanent error)",
    ["webhook", "outcome"],
)
ATTEMPTS = Counter(
    "vigil_notifier_attempts_total",
    "HTTP attempts per webhook by result: 2xx, 3xx, 4xx, 5xx or error (no response)",
    ["webhook", "result"],
)
ATTEMPT_SECONDS = Histogram(
    "vigil_notifier_attempt_seconds", "One HTTP attempt, request to response", ["webhook"], buckets=LATENCY_BUCKETS_S
)
ALERT_DELAY_SECONDS = Histogram(
    "vigil_notifier_alert_delay_seconds",
    "Alert sent by the edge uplink -> delivered to the webhook (retries included)",
    ["webhook"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0),
)
