"""The uplink simulator's metrics on hand-computed cases, trace parsing of every shared format, event files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.uplink.baselines import FixedBoxScheduler, FixedJsonBoxScheduler
from services.uplink.scheduler import DatScheduler, PendingEvent, SchedulerParams, UnitKind
from services.uplink.sim.harness import bench_uplink_main, method_names, run_methods
from services.uplink.sim.simulator import Link, PlanError, SimConfig, simulate, summarize
from services.uplink.sim.traces import BandwidthTrace, TraceFormatError, detect_format, load_trace, parse_trace
from services.uplink.sim.workload import (
    PATTERNS,
    EventFileError,
    default_size_samples,
    event_to_json,
    generate,
    parse_events,
)
from services.uplink.vigil_methods import VigilAlertFirstScheduler, VigilEventDrivenScheduler
from tests.fixtures.media import shared


def constant(bps: float) -> BandwidthTrace:
    return BandwidthTrace("const", np.array([bps]), "pensieve")


def ev(eid: str, arrival: float, level: int, score: float, c_json: int, c_roi: int, c_box: int) -> PendingEvent:
    return PendingEvent(eid, arrival, level, score, c_json, c_roi, c_box)


# --- link ------------------------------------------------------------------------------------------


def test_link_unit_spanning_seconds_continues_at_the_next_rate():
    link = Link(np.array([1000.0, 500.0]))
    # 500 B in the rest of second 0, then 500 B at 500 B/s.
    assert link.finish(0.5, 1000) == pytest.approx(2.0)
    assert link.finish(0.0, 0) == 0.0
    assert link.average(0.5, 1.5) == pytest.approx(750.0)
    # The trace loops: second 2 is second 0 again.
    assert link.capacity_at(2) == 1000.0
    assert Link(np.array([0.0, 100.0])).finish(0.0, 50) == pytest.approx(1.5)


# --- metrics on hand-computed runs ----------------------------------------------------------------


@pytest.fixture
def two() -> list[PendingEvent]:
    # S_a = 1.0, S_b = 0.2.
    return [ev("a", 0.2, 1, 1.0, 100, 200, 400), ev("b", 0.5, 0, 0.4, 100, 1000, 2000)]


def test_dat_waits_for_the_boundary_and_metrics_match_hand_computation(two):
    r = simulate(DatScheduler(), two, constant(1000.0), SimConfig(drain_s=5))
    m = summarize(r)
    # Boundary t=1: a JSON 1.0-1.1, b JSON 1.1-1.2, a ROI 1.2-1.4; b ROI (1000 B) no longer fits (600 left).
    out = {o.event.event_id: o for o in r.outcomes}
    assert out["a"].alert_s == pytest.approx(1.1) and out["b"].alert_s == pytest.approx(1.2)
    assert out["a"].visual_s == pytest.approx(1.4) and out["a"].visual_kind is UnitKind.ROI
    assert out["b"].visual_s is None
    assert m["w_alarm_s"] == pytest.approx((1.0 * 0.9 + 0.2 * 0.7) / 1.2)
    assert m["vtr_0_5"] == 0.0 and m["vtr_1"] == 0.0
    assert m["vtr_dvis"] == 0.5
    assert m["avg_visual_delay_s"] == pytest.approx(1.2)
    assert m["avg_visual_backfill_s"] == pytest.approx(0.3)
    assert m["undelivered_alerts"] == 0 and m["bytes_sent"] == 400 and m["visual_dropped"] == 0


def test_eventdriven_sends_on_arrival_when_the_link_is_idle(two):
    r = simulate(VigilEventDrivenScheduler(), two, constant(1000.0), SimConfig(drain_s=5))
    m = summarize(r)
    out = {o.event.event_id: o for o in r.outcomes}
    # a at 0.2: JSON 0.2-0.3, ROI 0.3-0.5; b at 0.5 on an idle link: JSON 0.5-0.6, its ROI exceeds the 400 B left.
    assert out["a"].alert_s == pytest.approx(0.3) and out["a"].visual_s == pytest.approx(0.5)
    assert out["b"].alert_s == pytest.approx(0.6) and out["b"].visual_s is None
    assert m["w_alarm_s"] == pytest.approx(0.1)
    assert m["vtr_0_5"] == 0.5 and m["vtr_1"] == 0.5
    assert m["avg_visual_delay_s"] == pytest.approx(0.3)


def test_event_driven_alert_waits_only_for_the_image_in_flight():
    # b arrives while a's 600 B ROI is on the link (0.2-0.8); alertfirst re-decides when the link falls idle.
    a, b = ev("a", 0.1, 1, 1.0, 100, 600, 900), ev("b", 0.3, 1, 1.0, 100, 600, 900)
    r = simulate(VigilAlertFirstScheduler(), [a, b], constant(1000.0), SimConfig(drain_s=5))
    out = {o.event.event_id: o for o in r.outcomes}
    assert out["a"].alert_s == pytest.approx(0.2)
    assert out["a"].visual_s == pytest.approx(0.8)
    assert out["b"].alert_s == pytest.approx(0.9)
    # b's ROI does not fit the 100 B left of interval 0; at the boundary it still meets 0.3 + 1.5.
    assert out["b"].visual_s == pytest.approx(1.6)


def test_fifo_overrun_and_the_deadline_drop():
    events = [ev(f"e{i}", 0.0, 1, 1.0, 100, 800, 900) for i in range(3)]
    r = simulate(FixedJsonBoxScheduler(), events, constant(1000.0), SimConfig(drain_s=5))
    out = [r_.alert_s for r_ in r.outcomes]
    # e0: JSON 0-0.1, box 0.1-1.0; e1 JSON queued behind it into the next interval, its box would end at 2.0 > 1.5.
    assert out == pytest.approx([0.1, 1.1, 1.2])
    m = summarize(r)
    assert m["visual_dropped"] == 2 and m["bytes_sent"] == 1200
    assert m["avg_visual_delay_s"] == pytest.approx(1.0)
    deferred = simulate(FixedJsonBoxScheduler(), events, constant(1000.0), SimConfig(drain_s=5, overrun="defer"))
    assert [o.alert_s for o in deferred.outcomes] == pytest.approx([0.1, 1.1, 1.2])


def test_fixed_box_image_carries_the_alert_and_is_never_dropped():
    events = [ev(f"e{i}", 0.0, 1, 1.0, 100, 800, 900) for i in range(2)]
    r = simulate(FixedBoxScheduler(), events, constant(1000.0), SimConfig(drain_s=5))
    assert [o.alert_s for o in r.outcomes] == pytest.approx([0.9, 1.8])
    assert [o.visual_s for o in r.outcomes] == pytest.approx([0.9, 1.8])
    assert summarize(r)["visual_dropped"] == 0


def test_an_alert_larger_than_any_budget_is_never_sent_by_dat():
    events = [ev("huge", 0.0, 1, 1.0, 5000, 100, 100), ev("ok", 0.0, 0, 0.5, 100, 100, 100)]
    m = summarize(simulate(DatScheduler(), events, constant(1000.0), SimConfig(drain_s=10)))
    assert m["undelivered_alerts"] == 1
    assert m["w_alarm_s"] == pytest.approx(0.1)


def test_previous_interval_estimate_overruns_when_capacity_drops():
    trace = BandwidthTrace("step", np.array([2000.0, 500.0, 500.0, 500.0, 500.0, 500.0]), "pensieve")
    events = [ev(f"e{i}", 0.5, 1, 1.0, 400, 5000, 5000) for i in range(4)]
    oracle = simulate(DatScheduler(), events, trace, SimConfig(drain_s=10))
    prev = simulate(DatScheduler(), events, trace, SimConfig(drain_s=10, bandwidth_estimate="previous"))
    # Oracle at t=1 knows 500 B/s: one JSON per interval. "previous" plans 2000 B/s: all four go, queued FIFO.
    assert [o.alert_s for o in oracle.outcomes] == pytest.approx([1.8, 2.8, 3.8, 4.8])
    assert [o.alert_s for o in prev.outcomes] == pytest.approx([1.8, 2.6, 3.4, 4.2])


def test_a_plan_that_breaks_the_model_is_rejected():
    class Twice(DatScheduler):
        name = "twice"

        def plan(self, pending, bandwidth_Bps, now_s):  # type: ignore[no-untyped-def]
            p = super().plan(pending, bandwidth_Bps, now_s)
            return type(p)(units=p.units + p.units[:1], est_time_s=p.est_time_s)

    with pytest.raises(PlanError, match="twice"):
        simulate(Twice(), [ev("a", 0.0, 1, 1.0, 100, 100, 100)], constant(1000.0))


def test_vtr_denominator_is_all_events_and_json_only_scores_zero():
    events = generate("low", 60, seed=1)
    rows = {r["method"]: r for r in run_methods(events, constant(50_000.0), methods=["json_only", "dat"])}
    assert rows["json_only"]["vtr_1"] == 0.0 and rows["json_only"]["avg_visual_delay_s"] is None
    assert 0.0 < rows["dat"]["vtr_1"] <= 1.0


# --- traces ----------------------------------------------------------------------------------------


def test_mahimahi_synthetic_and_fold_of_the_last_partial_second():
    t = parse_trace("0\n0\n999\n1000\n1999\n2000\n", "m")
    assert t.source_format == "mahimahi"
    assert list(t.capacity_Bps) == [3 * 1500, 3 * 1500]
    # The constant-rate "1": one packet per ms = 1.5 MB/s.
    assert list(parse_trace("1\n", "one").capacity_Bps) == [1_500_000.0]


def test_pensieve_synthetic_is_averaged_per_second():
    t = parse_trace("0 8\n0.5\t16\n1.0 8\n", "p", scale=0.5)
    assert t.source_format == "pensieve"
    assert list(t.capacity_Bps) == pytest.approx([0.75e6, 0.5e6])


def test_unknown_and_empty_formats_fail_clearly(tmp_path):
    with pytest.raises(TraceFormatError, match="unknown trace format"):
        detect_format("a b c\n", "x")
    with pytest.raises(TraceFormatError, match="empty"):
        detect_format("\n\n", "x")
    empty = tmp_path / "empty.up"
    empty.write_text("")
    with pytest.raises(TraceFormatError, match="empty"):
        load_trace(empty)
    with pytest.raises(TraceFormatError, match="not found"):
        load_trace(tmp_path / "missing")
    with pytest.raises(TraceFormatError, match="zero"):
        parse_trace("0 0\n1 0\n", "z")
    with pytest.raises(ValueError, match="scale"):
        parse_trace("1\n", "one", scale=0)


def test_shared_mahimahi_trace():
    t = load_trace(shared("traces", "ATT-LTE-driving.up"))
    assert t.source_format == "mahimahi" and t.duration_s == 1012
    assert t.mean_Bps * 8 / 1e6 == pytest.approx(0.83, abs=0.02)
    assert load_trace(shared("traces", "ATT-LTE-driving.up"), scale=0.25).mean_Bps == pytest.approx(t.mean_Bps / 4)


def test_shared_pensieve_traces():
    t = load_trace(shared("traces", "pensieve", "norway_car_2"))
    assert t.source_format == "pensieve"
    assert t.mean_Bps * 8 / 1e6 == pytest.approx(1.01, abs=0.05)
    oboe = load_trace(shared("traces", "pensieve", "oboe_trace_0.txt"))  # starts at 0.474 s: re-based
    assert oboe.source_format == "pensieve" and oboe.capacity_Bps[0] > 0


def test_shared_5g_list_trace_runs():
    path = shared("traces", "5g_uplink", "uplink_walking__5g__away.list")
    one, two = load_trace(path), load_trace(path, run=2)
    assert one.source_format == "5g-list" and one.name.endswith("#run1")
    assert one.duration_s == 547 and two.duration_s == 522
    assert one.mean_Bps * 8 / 1e6 == pytest.approx(49.3, abs=0.5)
    with pytest.raises(TraceFormatError, match="Run 99"):
        load_trace(path, run=99)


# --- workload and event files ---------------------------------------------------------------------


def test_patterns_are_seeded_sorted_and_use_measured_sizes():
    a, b = generate("burst", 120, seed=4), generate("burst", 120, seed=4)
    assert a == b and a != generate("burst", 120, seed=5)
    assert [e.arrival_s for e in a] == sorted(e.arrival_s for e in a)
    sizes = {(s.c_json, s.c_roi, s.c_box) for s in default_size_samples()}
    assert all((e.c_json, e.c_roi, e.c_box) in sizes for e in a)
    assert set(PATTERNS) == {"low", "medium", "burst"}
    low, medium = generate("low", 600, seed=0), generate("medium", 600, seed=0)
    assert 200 < len(low) < 400 and 1000 < len(medium) < 1400


def test_event_file_round_trip():
    events = generate("medium", 10, seed=2)
    assert parse_events(event_to_json(e) + "\n" for e in events) == events


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: not JSON"),
        ("[1, 2]", "line 2: expected a JSON object"),
        ('{"id": "x", "arrival_s": 1.0}', "line 2: missing keys"),
        ('{"id": "b", "arrival_s": 1.0, "level": 1, "score": 0.5, "c_json": 1, "c_roi": 1, "c_box": 1, "x": 1}', "x"),
        ('{"id": "b", "arrival_s": "1", "level": 1, "score": 0.5, "c_json": 1, "c_roi": 1, "c_box": 1}', "arrival_s"),
        ('{"id": "b", "arrival_s": 1.0, "level": true, "score": 0.5, "c_json": 1, "c_roi": 1, "c_box": 1}', "level"),
        ('{"id": "b", "arrival_s": 1.0, "level": 1, "score": 0.5, "c_json": 1.5, "c_roi": 1, "c_box": 1}', "c_json"),
        ('{"id": "b", "arrival_s": -1.0, "level": 1, "score": 0.5, "c_json": 1, "c_roi": 1, "c_box": 1}', ">= 0"),
        ('{"id": "b", "arrival_s": 1.0, "level": 1, "score": 0.5, "c_json": 0, "c_roi": 1, "c_box": 1}', "c_json"),
        ('{"id": "a", "arrival_s": 1.0, "level": 1, "score": 0.5, "c_json": 1, "c_roi": 1, "c_box": 1}', "duplicate"),
    ],
)
def test_event_file_errors_name_the_line(line, message):
    first = '{"id": "a", "arrival_s": 0.5, "level": 1, "score": 0.5, "c_json": 10, "c_roi": 20, "c_box": 30}'
    with pytest.raises(EventFileError, match="line 2") as info:
        parse_events([first, line])
    assert message in str(info.value)


def test_empty_event_file_is_an_error():
    with pytest.raises(EventFileError, match="no events"):
        parse_events(["", "  "])


# --- harness CLI ----------------------------------------------------------------------------------


def test_bench_cli_on_an_event_file(tmp_path, capsys):
    trace = tmp_path / "t.pensieve"
    trace.write_text("0 0.2\n1 0.1\n2 0.3\n")
    events = tmp_path / "e.jsonl"
    events.write_text("\n".join(event_to_json(e) for e in generate("burst", 30, seed=1)[:12]) + "\n")
    assert bench_uplink_main(["--trace", str(trace), "--scale", "0.5", "--events", str(events)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["method"] for r in rows] == method_names()
    keys = {"method", "w_alarm_s", "vtr_0_5", "vtr_1", "avg_visual_delay_s", "undelivered_alerts", "bytes_sent"}
    assert all(keys <= set(r) for r in rows)
    by = {r["method"]: r for r in rows}
    # The horizon optimum bounds every interval-based method that respects the budget.
    for m in ("dat", "json_only", "bandwidth_only", "vigil_carryover", "optimal"):
        assert by["optimal_horizon"]["obj_alarm"] <= by[m]["obj_alarm"] + 1e-6


def test_bench_cli_reports_bad_inputs(tmp_path, capsys):
    trace = tmp_path / "t.pensieve"
    trace.write_text("0 1\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n')
    assert bench_uplink_main(["--trace", str(trace), "--events", str(bad)]) == 2
    assert "line 1" in capsys.readouterr().err
    assert bench_uplink_main(["--trace", str(tmp_path / "nope"), "--pattern", "low"]) == 2


def test_params_are_validated():
    with pytest.raises(ValueError):
        SchedulerParams(interval_s=0)
    with pytest.raises(ValueError):
        SimConfig(horizon_s=-1)
