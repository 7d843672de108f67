"""The uplink's run loop: one scheduling decision per interval, sent in order, acknowledged when done.

Pure of transport: sending a unit and acknowledging a finished event are
callables given by the service. Times are wall-clock seconds (Unix epoch), the
clock events carry from gating, so "latency from arrival" means from the
moment the event entered the queue.

Per interval (Delta): the scheduler plans over the pending set with the
current bandwidth estimate; the units go out in plan order, each acknowledged
by the cloud broker before the next; a visual unit whose deadline (arrival +
D_vis) has passed is dropped and counted, never an alert; units still unsent
when the interval is over stay pending and are planned again. An event is
acknowledged (its edge offset may be committed) once its JSON is delivered
and no visual unit can follow: sent, expired, or not revisited by the method.

One rule is the service's, not Algorithm 1's: when the plan takes no alert
although alerts are waiting, the best one (highest S_i / c_json_i) goes out
anyway, first. The estimate is learned only from this uplink's own sends, so
an estimate too low for any JSON would never be corrected: one slow sample
(the first send after the link came back, which waited for the reconnect)
held every alert at the edge for good (issue 13, "broker unreachable 30 s").
The probe sends at the link's real pace and its sample repairs the estimate.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from services.common.bus import RetryableError
from services.uplink.estimator import BandwidthEstimator
from services.uplink.scheduler import PendingEvent, Plan, Scheduler, Unit, UnitKind

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    event: PendingEvent
    payload: Any
    token: Any
    visual_done: bool = False


@dataclass
class IntervalReport:
    """What one interval did."""

    planned: int = 0
    sent: list[Unit] = field(default_factory=list)
    expired_visual: int = 0
    deferred: int = 0
    bandwidth_Bps: float = 0.0
    acked: int = 0


@dataclass
class DispatcherStats:
    """Totals since start."""

    alerts_sent: int = 0
    visual_sent: int = 0
    visual_expired: int = 0
    # Alerts sent first although the plan took none (an estimate too low to fit one).
    probes: int = 0
    bytes_sent: int = 0
    alert_delays_s: list[float] = field(default_factory=list)
    visual_delays_s: list[float] = field(default_factory=list)


class UplinkDispatcher:
    """Holds the pending events and runs the scheduler over them, interval by interval."""

    def __init__(
        self,
        scheduler: Scheduler,
        estimator: BandwidthEstimator,
        send: Callable[[Unit, Any], None],
        ack: Callable[[Any], None],
        clock: Callable[[], float] = time.time,
        on_expired: Callable[[Unit], None] | None = None,
        on_probe: Callable[[Unit], None] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.estimator = estimator
        self._send = send
        self._ack = ack
        self._clock = clock
        self._on_expired = on_expired
        self._on_probe = on_probe
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._arrivals = 0
        self.stats = DispatcherStats()

    def add(self, event: PendingEvent, payload: Any, token: Any) -> None:
        """Queue an event (a redelivered id replaces nothing: the first copy stays)."""
        with self._lock:
            if event.event_id not in self._entries:
                self._entries[event.event_id] = _Entry(event, payload, token)
                self._arrivals += 1
                self._arrived.notify_all()

    def pending(self) -> list[PendingEvent]:
        """Snapshot of the queue in arrival order."""
        with self._lock:
            return sorted((e.event for e in self._entries.values()), key=lambda e: e.arrival_s)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def run_interval(self, start_s: float | None = None) -> IntervalReport:
        """Plan and send one interval; returns what happened."""
        p = self.scheduler.params
        start = self._clock() if start_s is None else start_s
        bw = self.estimator.estimate()
        pending = self.pending()
        plan = self._with_probe(self.scheduler.plan(pending, bw, start), pending, bw)
        report = self._execute(plan, bw, start + p.interval_s)
        self.estimator.close_interval()
        return report

    def _with_probe(self, plan: Plan, pending: list[PendingEvent], bw: float) -> Plan:
        """`plan`, led by the best waiting alert when the plan takes none (see the module docstring)."""
        waiting = [e for e in pending if not e.json_sent]
        if not waiting or UnitKind.JSON not in self.scheduler.alert_kinds:
            return plan
        if any(u.kind is UnitKind.JSON for u in plan.units):
            return plan
        beta = self.scheduler.params.beta
        # max() keeps the first of equals: the earliest arrival, as the scheduler's stable sort does.
        best = max(waiting, key=lambda e: e.priority(beta) / max(e.c_json, 1))
        self.stats.probes += 1
        log.info(
            "bandwidth estimate %.0f B/s fits no alert (%d waiting): sending %s first to measure the link",
            bw,
            len(waiting),
            best.event_id,
        )
        probe = Unit(best.event_id, UnitKind.JSON, best.c_json)
        if self._on_probe is not None:
            self._on_probe(probe)
        # Whatever else fitted (evidence of alerts already sent) follows, or waits if the probe takes the interval.
        return Plan(units=[probe, *plan.units], est_time_s=plan.est_time_s + probe.size_bytes / max(bw, 1e-9))

    def run_on_arrival(self, interval_end_s: float, spent_bytes: int) -> IntervalReport:
        """Event-driven methods: plan now over what is left of this interval's budget (link idle)."""
        bw = self.estimator.estimate()
        budget = bw * self.scheduler.params.interval_s - spent_bytes
        if budget <= 0:
            return IntervalReport(bandwidth_Bps=bw)
        plan = self.scheduler.plan_on_arrival(self.pending(), bw, self._clock(), budget)
        return self._execute(plan, bw, interval_end_s)

    def _execute(self, plan: Plan, bw: float, end: float) -> IntervalReport:
        """Send a plan's units in order until `end`; the rest stays pending for the next decision."""
        d_vis = self.scheduler.params.d_vis_s
        report = IntervalReport(planned=len(plan.units), bandwidth_Bps=bw)
        for i, unit in enumerate(plan.units):
            now = self._clock()
            if now >= end:
                report.deferred = len(plan.units) - i
                break
            with self._lock:
                entry = self._entries.get(unit.event_id)
            if entry is None:
                continue
            # Evidence that would land after arrival + D_vis (at the estimated rate) is useless: drop it.
            if unit.kind is not UnitKind.JSON and now + unit.size_bytes / bw - entry.event.arrival_s > d_vis:
                self._expire_visual(entry, report)
                if self._on_expired is not None:
                    self._on_expired(unit)
                continue
            t0 = self._clock()
            try:
                self._send(unit, entry.payload)
            except RetryableError as exc:
                # The cloud broker is away (or its producer was just rebuilt): the unit stays pending and the
                # next interval tries again. Anything else escapes and fails the service (exit 1, restarted).
                log.warning("cloud unreachable, %d units wait for the next interval: %s", len(plan.units) - i, exc)
                report.deferred = len(plan.units) - i
                break
            t1 = self._clock()
            self.estimator.observe(unit.size_bytes, t1 - t0)
            self.stats.bytes_sent += unit.size_bytes
            report.sent.append(unit)
            with self._lock:
                if unit.kind is UnitKind.JSON:
                    entry.event = replace(entry.event, json_sent=True)
                    self.stats.alerts_sent += 1
                    self.stats.alert_delays_s.append(t1 - entry.event.arrival_s)
                else:
                    entry.visual_done = True
                    self.stats.visual_sent += 1
                    self.stats.visual_delays_s.append(t1 - entry.event.arrival_s)
        report.acked = self._ack_finished(final=False)
        return report

    def _expire_visual(self, entry: _Entry, report: IntervalReport) -> None:
        with self._lock:
            entry.visual_done = True
        report.expired_visual += 1
        self.stats.visual_expired += 1

    def _ack_finished(self, final: bool) -> int:
        now = self._clock()
        d_vis = self.scheduler.params.d_vis_s
        done: list[_Entry] = []
        with self._lock:
            for eid, e in list(self._entries.items()):
                if not e.event.json_sent:
                    continue
                may_follow = self.scheduler.revisits_visual and now - e.event.arrival_s <= d_vis
                if e.visual_done or final or not may_follow:
                    done.append(e)
                    del self._entries[eid]
        for e in done:
            self._ack(e.token)
        return len(done)

    def shutdown(self) -> int:
        """Acknowledge every delivered alert (its remaining evidence is abandoned) before stopping.

        Undelivered events stay unacknowledged, so a restart re-reads exactly those.
        """
        return self._ack_finished(final=True)

    def run(self, stop: threading.Event) -> None:
        """Run an interval at every boundary of a fixed Delta grid until `stop`; then shutdown().

        An event arriving mid-interval waits for the next boundary, as in DAT
        (that wait counts in its latency), unless the method is event-driven:
        then an arrival on the idle link is planned at once over what is left
        of the interval's budget.
        """
        delta = self.scheduler.params.interval_s
        event_driven = self.scheduler.event_driven
        origin = self._clock()
        while not stop.is_set():
            now = self._clock()
            boundary = origin + math.ceil((now - origin) / delta + 1e-9) * delta
            spent = 0
            seen = self._arrivals
            while event_driven and not stop.is_set():
                with self._arrived:
                    if self._arrivals == seen:
                        self._arrived.wait(timeout=max(boundary - self._clock(), 0.0))
                    arrived = self._arrivals != seen
                    seen = self._arrivals
                if self._clock() >= boundary or stop.is_set():
                    break
                if not arrived:
                    continue
                report = self.run_on_arrival(boundary, spent)
                spent += sum(u.size_bytes for u in report.sent)
            if stop.wait(max(boundary - self._clock(), 0.0)):
                break
            if self.pending():
                report = self.run_interval(boundary)
                log.debug(
                    "interval: %d sent, %d expired, %d deferred, B=%.0f B/s",
                    len(report.sent),
                    report.expired_visual,
                    report.deferred,
                    report.bandwidth_Bps,
                )
        self.shutdown()
