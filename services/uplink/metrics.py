"""Every metric the uplink service emits, defined once."""

from prometheus_client import Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS_S

ALERTS_SENT = Counter("vigil_uplink_alerts_sent_total", "Alerts sent to the cloud")
EVIDENCE_SENT = Counter("vigil_uplink_evidence_sent_total", "Evidence units sent to the cloud", ["kind"])
BYTES_SENT = Counter("vigil_uplink_bytes_sent_total", "Payload bytes sent to the cloud", ["kind"])
ALERT_DELAY_SECONDS = Histogram(
    "vigil_uplink_alert_delay_seconds", "Event creation to alert sent", buckets=LATENCY_BUCKETS_S
)
EVIDENCE_EXPIRED = Counter(
    "vigil_uplink_evidence_expired_total", "Evidence units dropped because they would miss arrival + D_vis"
)
PROBES = Counter(
    "vigil_uplink_probes_total",
    "Alerts sent although the bandwidth estimate fitted none in an interval (the estimate is re-measured)",
)
PENDING_EVENTS = Gauge("vigil_uplink_pending_events", "Events queued at the edge, not finished yet")
BANDWIDTH_ESTIMATE = Gauge("vigil_uplink_bandwidth_estimate_bytes_per_second", "The estimate the scheduler plans with")
