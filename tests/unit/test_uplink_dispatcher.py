"""The uplink's interval loop, bandwidth estimator and emulated link, on a simulated clock."""

from __future__ import annotations

import pytest

from services.uplink.dispatcher import UplinkDispatcher
from services.uplink.emulated_link import TraceClock
from services.uplink.estimator import BandwidthEstimator
from services.uplink.scheduler import DatScheduler, PendingEvent, Plan, SchedulerParams, Unit, UnitKind
from tests.fakes import FakeClock


class Link:
    """Sends at `rate` bytes/s on the fake clock and records what went out."""

    def __init__(self, clock: FakeClock, rate: float) -> None:
        self.clock, self.rate = clock, rate
        self.sent: list[tuple[str, UnitKind]] = []

    def __call__(self, unit: Unit, payload: object) -> None:
        self.clock.now += unit.size_bytes / self.rate
        self.sent.append((unit.event_id, unit.kind))


def ev(eid: str, level: int, score: float, arrival: float = 100.0, c_roi: int = 4000, c_box: int = 50_000):
    return PendingEvent(eid, arrival, level, score, c_json=300, c_roi=c_roi, c_box=c_box)


def make(rate: float, prior: float, scheduler=None):
    clock = FakeClock(100.0)
    link = Link(clock, rate)
    acked: list[str] = []
    d = UplinkDispatcher(
        scheduler or DatScheduler(),
        BandwidthEstimator(prior, safety=1.0),
        link,
        ack=lambda tok: acked.append(tok),
        clock=clock,
    )
    return clock, link, acked, d


def test_alerts_first_by_priority_then_evidence_then_ack() -> None:
    clock, link, acked, d = make(rate=20_000, prior=20_000)
    d.add(ev("low", 0, 0.2), "p", "low")
    d.add(ev("high", 1, 0.9), "p", "high")
    report = d.run_interval(clock.now)
    assert link.sent[:2] == [("high", UnitKind.JSON), ("low", UnitKind.JSON)]
    assert ("high", UnitKind.ROI) in link.sent
    assert sorted(acked) == ["high", "low"] and len(d) == 0
    assert report.bandwidth_Bps == 20_000


def test_json_that_does_not_fit_stays_pending() -> None:
    clock, link, acked, d = make(rate=400, prior=400)
    d.add(ev("a", 1, 0.9), "p", "a")
    d.add(ev("b", 1, 0.8), "p", "b")
    d.run_interval(clock.now)
    assert link.sent == [("a", UnitKind.JSON)] and acked == ["a"]
    assert [e.event_id for e in d.pending()] == ["b"]
    d.run_interval(clock.now)
    assert acked == ["a", "b"]


def test_overrun_defers_the_rest_of_the_plan() -> None:
    # The estimate says 10 kB/s but the link gives 500 B/s: the interval ends mid-plan.
    clock, _link, _acked, d = make(rate=500, prior=10_000)
    for i in range(5):
        d.add(ev(f"e{i}", 1, 0.9 - i / 10), "p", f"e{i}")
    report = d.run_interval(clock.now)
    assert report.deferred > 0 and len(d) > 0
    assert d.estimator.estimate() == pytest.approx(500)


def test_visual_past_deadline_is_dropped_not_the_alert() -> None:
    # The event waited 1.6 s for its JSON (a congested link earlier): its evidence is already too late.
    clock, link, acked, d = make(rate=50_000, prior=50_000, scheduler=DatScheduler(SchedulerParams(d_vis_s=1.5)))
    d.add(ev("late", 1, 0.9, arrival=clock.now - 1.6), "p", "late")
    report = d.run_interval(clock.now)
    assert link.sent == [("late", UnitKind.JSON)] and acked == ["late"]
    assert report.expired_visual == 1 and d.stats.visual_expired == 1


def test_shutdown_acks_delivered_only() -> None:
    clock, _link, acked, d = make(rate=400, prior=400)
    d.add(ev("a", 1, 0.9), "p", "a")
    d.add(ev("b", 0, 0.1), "p", "b")
    d.run_interval(clock.now)
    assert d.shutdown() == 0 and acked == ["a"] and [e.event_id for e in d.pending()] == ["b"]


def test_redelivered_event_is_queued_once() -> None:
    _clock, _link, _acked, d = make(rate=20_000, prior=20_000)
    d.add(ev("a", 1, 0.9), "p", "a")
    d.add(ev("a", 1, 0.9), "p", "a-again")
    assert len(d) == 1


def test_estimator_is_conservative() -> None:
    est = BandwidthEstimator(prior_Bps=1000, window=3, safety=1.0)
    assert est.estimate() == 1000
    for rate in (10_000, 1_000, 10_000):
        est.observe(rate, 1.0)
        est.close_interval()
    assert est.estimate() == pytest.approx(3 / (1 / 10_000 + 1 / 1000 + 1 / 10_000))
    assert est.close_interval() is None  # idle intervals add no sample


def test_trace_clock_spans_seconds() -> None:
    tc = TraceClock([1000, 0, 500], start_s=0.0)
    assert tc.finish_time(0.0, 500) == pytest.approx(0.5)
    # 500 B left after second 0, nothing in second 1, 500 B/s in second 2.
    assert tc.finish_time(0.5, 1000) == pytest.approx(3.0)
    # The trace loops.
    assert tc.finish_time(3.0, 1000) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        TraceClock([0, 0], 0.0)


def test_event_driven_method_sends_on_arrival_not_at_the_boundary() -> None:
    import threading
    import time

    from services.uplink.bootstrap import build_scheduler

    def run(method: str) -> float:
        sent_at: list[float] = []

        def send(unit: Unit, payload: object) -> None:
            sent_at.append(time.time())

        d = UplinkDispatcher(
            build_scheduler(method, SchedulerParams(interval_s=1.0)),
            BandwidthEstimator(1e6),
            send,
            ack=lambda tok: None,
        )
        stop = threading.Event()
        worker = threading.Thread(target=d.run, args=(stop,))
        worker.start()
        time.sleep(0.2)
        arrival = time.time()
        d.add(ev("a", 1, 0.9, arrival=arrival), "p", "a")
        deadline = time.time() + 3
        while not sent_at and time.time() < deadline:
            time.sleep(0.01)
        stop.set()
        worker.join()
        return sent_at[0] - arrival

    assert run("vigil_eventdriven") < 0.5  # at once, on the idle link (loose: CI machines are busy)
    assert run("dat") > 0.6  # waits for the next boundary, 0.8 s away


def test_cloud_away_defers_the_interval_instead_of_killing_the_loop() -> None:
    """Issue 13: a send that raised killed the interval thread; a retryable failure now waits one interval."""
    from services.common.bus import RetryableError

    clock = FakeClock(100.0)
    link = Link(clock, 20_000)
    acked: list[str] = []
    failures = [RetryableError("cloud broker unreachable")]

    def flaky(unit: Unit, payload: object) -> None:
        if failures:
            raise failures.pop()
        link(unit, payload)

    d = UplinkDispatcher(
        DatScheduler(), BandwidthEstimator(20_000, safety=1.0), flaky, ack=lambda tok: acked.append(tok), clock=clock
    )
    d.add(ev("a", 1, 0.9), "p", "a")
    first = d.run_interval(clock.now)
    assert first.sent == [] and first.deferred > 0 and acked == [] and len(d) == 1
    d.run_interval(clock.now + 1.0)
    assert link.sent[0] == ("a", UnitKind.JSON) and acked == ["a"]


def test_an_estimate_too_low_for_any_alert_is_probed_not_kept_forever() -> None:
    """Issue 13, broker unreachable 30 s: the first send after the link came back waited ~30 s for the
    reconnect, the estimate fell to ~10 B/s, no JSON (300 B) fit a 1 s interval, and since the estimate only
    learns from sends, the 7 alerts behind it never left the edge. The best waiting alert now goes out first."""
    clock = FakeClock(100.0)
    link = Link(clock, 20_000)
    acked: list[str] = []
    reconnect = [30.0]

    def send(unit: Unit, payload: object) -> None:
        if reconnect:
            clock.now += reconnect.pop()
        link(unit, payload)

    d = UplinkDispatcher(
        DatScheduler(), BandwidthEstimator(20_000, safety=1.0), send, ack=lambda tok: acked.append(tok), clock=clock
    )
    d.add(ev("first", 1, 0.9), "p", "first")
    d.run_interval(clock.now)
    assert acked == ["first"] and d.estimator.estimate() < 300  # one JSON no longer fits an interval
    for i in range(7):
        d.add(ev(f"e{i}", 1, 0.9 - i / 100, arrival=clock.now), "p", f"e{i}")
    for _ in range(10):
        d.run_interval(clock.now)
        clock.now += 1.0
    # Highest priority first, one per interval while the estimate is low, then the window forgets the slow sample.
    assert acked[1:] == [f"e{i}" for i in range(7)]
    assert d.stats.probes >= 1 and d.estimator.estimate() > 300


def test_no_probe_when_the_plan_takes_an_alert_or_none_waits() -> None:
    clock, _link, acked, d = make(rate=20_000, prior=20_000)
    d.run_interval(clock.now)
    d.add(ev("a", 1, 0.9), "p", "a")
    d.run_interval(clock.now)
    assert acked == ["a"] and d.stats.probes == 0


def test_a_probe_leads_the_plan_and_keeps_what_else_fitted() -> None:
    """Evidence already planned for an alert sent earlier (revisiting methods) is not dropped for the probe."""
    _clock, _link, _acked, d = make(rate=20_000, prior=20_000)
    waiting = ev("new", 1, 0.9)
    sent = PendingEvent("old", 100.0, 1, 0.9, c_json=300, c_roi=100, c_box=50_000, json_sent=True)
    evidence = Unit("old", UnitKind.ROI, 100)
    plan = d._with_probe(Plan(units=[evidence], est_time_s=0.005), [sent, waiting], 20_000)
    assert plan.units == [Unit("new", UnitKind.JSON, 300), evidence] and d.stats.probes == 1
