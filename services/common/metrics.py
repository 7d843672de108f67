"""Prometheus helpers shared by services, and an in-process latency recorder for run summaries."""

from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np
from prometheus_client import Counter, start_http_server

# Buckets from 1 ms to 30 s: the stages range from JPEG decode to a VLM call.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# The bus is shared code, so its metrics are named for it rather than for a service; the scrape's
# job/pod labels say which service dead-lettered.
DEAD_LETTERED = Counter(
    "vigil_bus_dead_lettered_total",
    "Records sent to a dead-letter topic (or dropped when none is set), by source topic and reason",
    ["topic", "reason"],
)
PRODUCER_REBUILDS = Counter(
    "vigil_bus_producer_rebuilds_total",
    "Kafka producers replaced because the broker no longer knew their state (unknown producer id, fenced)",
)
CONSUMER_FAILING_BATCHES = Counter(
    "vigil_bus_consumer_failing_batches_total",
    "Polled batches in which no record could be finished (every handler failed, or the flush did)",
    ["group"],
)


def start_metrics_server(port: int, host: str = "0.0.0.0") -> None:
    """Expose /metrics on `host`:`port` (port 0 = disabled)."""
    if port:
        start_http_server(port, addr=host)


class LatencyRecorder:
    """Keeps raw per-stage samples (bounded) so a run can report exact p50/p95."""

    def __init__(self, max_samples: int = 100_000) -> None:
        self._samples: dict[str, list[float]] = defaultdict(list)
        self._max = max_samples
        self._lock = threading.Lock()

    def record(self, stage: str, ms: float) -> None:
        """Add one sample in milliseconds."""
        with self._lock:
            s = self._samples[stage]
            if len(s) < self._max:
                s.append(ms)

    def totals(self) -> dict[str, float]:
        """{stage: milliseconds summed over its samples}: how long each stage was busy."""
        with self._lock:
            return {stage: float(sum(v)) for stage, v in sorted(self._samples.items()) if v}

    def samples(self, stage: str) -> list[float]:
        """A copy of one stage's samples in milliseconds."""
        with self._lock:
            return list(self._samples.get(stage, []))

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {n, p50_ms, p95_ms}} over the recorded samples."""
        with self._lock:
            return {
                stage: {
                    "n": len(v),
                    "p50_ms": round(float(np.percentile(v, 50)), 2),
                    "p95_ms": round(float(np.percentile(v, 95)), 2),
                }
                for stage, v in sorted(self._samples.items())
                if v
            }
