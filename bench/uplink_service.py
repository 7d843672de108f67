"""The real uplink service code (dispatcher, estimator, cloud sender) over an EMULATED trace-shaped link.

Unlike the simulator, this runs the threads, the in-process bus and the wall
clock: it measures what the service does, including the wait for interval
boundaries and the estimator's mistakes. Prints one JSON line per method.
Usage: python -m bench.uplink_service [--trace PATH] [--scale 0.25] [--events 40] [--rate 2.0]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench.harness import SHARED_DATA, compare, emit, percentiles
from services.common.bus.inprocess import InProcessBus
from services.common.config import TopicsConfig
from services.uplink.bootstrap import ScheduledUplink
from services.uplink.config import UplinkConfig
from services.uplink.emulated_link import EmulatedLinkBus
from services.uplink.sim.traces import load_trace
from services.uplink.sim.workload import SizeSample, default_size_samples
from vigil.event.v1 import event_pb2

DEFAULT_TRACE = SHARED_DATA / "traces" / "ATT-LTE-driving.up"
METHODS = ["dat", "vigil_eventdriven", "vigil_carryover", "vigil_carryover_eventdriven", "vigil_alertfirst"]


def make_event(i: int, rng: np.random.Generator, sizes: tuple[SizeSample, ...]) -> event_pb2.Event:
    """An event with a real measured (level, score, c_json, c_roi, c_box) sample."""
    s = sizes[int(rng.integers(len(sizes)))]
    unit = event_pb2.EvidenceUnit
    return event_pb2.Event(
        event_id=f"bench-{i:05d}",
        camera_id="bench",
        created_time_ns=time.time_ns(),
        level=s.level,
        score=s.score,
        json=unit(kind=event_pb2.EVIDENCE_KIND_JSON, size_bytes=s.c_json, payload=b"j" * s.c_json),
        roi=unit(kind=event_pb2.EVIDENCE_KIND_ROI, size_bytes=s.c_roi, payload=b"r" * s.c_roi),
        box=unit(kind=event_pb2.EVIDENCE_KIND_BOX, size_bytes=s.c_box, payload=b"b" * s.c_box),
    )


def run(method: str, capacity: np.ndarray, n_events: int, rate: float, seed: int) -> dict[str, object]:
    """Feed `n_events` Poisson arrivals at `rate`/s through the service; measure delays."""
    rng = np.random.default_rng(seed)
    sizes = default_size_samples()
    edge, cloud_inner = InProcessBus(), InProcessBus()
    cloud = EmulatedLinkBus(cloud_inner, capacity)
    topics = TopicsConfig()
    uplink = ScheduledUplink(edge, cloud, topics, UplinkConfig(method=method, prior_bandwidth_Bps=float(capacity[0])))
    stop = threading.Event()
    uplink.start(stop)
    for i in range(n_events):
        time.sleep(float(rng.exponential(1.0 / rate)))
        edge.publish(topics.events, make_event(i, rng, sizes).SerializeToString(), key="bench")
    deadline = time.time() + 60
    while uplink.dispatcher.stats.alerts_sent < n_events and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.6)  # let carry-over evidence finish or expire
    stop.set()
    uplink.close()
    st = uplink.dispatcher.stats
    a = np.array(st.alert_delays_s) if st.alert_delays_s else np.array([np.nan])
    v = np.array(st.visual_delays_s) if st.visual_delays_s else np.array([np.nan])
    return {
        "bench": "uplink_service",
        "method": method,
        "events": n_events,
        "alerts": st.alerts_sent,
        "alert_delay_mean_s": round(float(np.nanmean(a)), 3),
        "alert_delay_p95_s": round(percentiles(a, [95])[0], 3),
        "visual_sent": st.visual_sent,
        "visual_expired": st.visual_expired,
        "visual_delay_mean_s": round(float(np.nanmean(v)), 3),
        "bytes_sent": st.bytes_sent,
    }


def main() -> int:
    """Every method on the same seeded arrivals and trace."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--events", type=int, default=40)
    ap.add_argument("--rate", type=float, default=2.0, help="mean event arrivals per second")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="*", default=METHODS)
    args = ap.parse_args()
    trace = load_trace(args.trace, scale=args.scale)
    results = []
    for method in args.methods:
        r = run(method, trace.capacity_Bps, args.events, args.rate, args.seed)
        r.update({"trace": trace.name, "scale": args.scale, "emulated_link": True})
        results.append(r)
        emit(r)
    ref = next((r for r in results if r["method"] == "dat"), None)
    if ref:
        # The floor keeps a zero DAT delay from dividing by zero: the ratio then reads as "how many times worse".
        dat_delay = max(float(ref["alert_delay_mean_s"]), 1e-9)  # type: ignore[arg-type]
        for r in results:
            key = "alert_delay_ratio_vs_dat"
            compare(
                "uplink_service_vs_dat",
                {key: float(r["alert_delay_mean_s"])},  # type: ignore[arg-type]
                {key: dat_delay},
                method=r["method"],
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
