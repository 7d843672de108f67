"""DAT Algorithm 1 on hand-made cases, the paper's baselines, and Vigil's methods."""

from __future__ import annotations

import random

import pytest

from services.uplink.baselines import (
    BandwidthOnlyScheduler,
    FixedBoxScheduler,
    FixedJsonBoxScheduler,
    FixedRoiScheduler,
    JsonOnlyScheduler,
    PriorityOnlyScheduler,
)
from services.uplink.scheduler import DatScheduler, PendingEvent, Plan, SchedulerParams, UnitKind
from services.uplink.vigil_methods import (
    VigilAlertFirstScheduler,
    VigilCarryoverEventDrivenScheduler,
    VigilCarryoverScheduler,
    VigilEventDrivenScheduler,
    hierarchical_greedy,
)

J, R, X = UnitKind.JSON, UnitKind.ROI, UnitKind.BOX


def ev(
    eid: str,
    level: int,
    score: float,
    c_json: int,
    c_roi: int,
    c_box: int,
    arrival: float = 0.0,
    json_sent: bool = False,
) -> PendingEvent:
    return PendingEvent(eid, arrival, level, score, c_json, c_roi, c_box, json_sent=json_sent)


def units(plan: Plan) -> list[tuple[str, UnitKind]]:
    return [(u.event_id, u.kind) for u in plan.units]


# --- DAT Algorithm 1 ---------------------------------------------------------------------------


def test_dat_semantic_then_visual_layer():
    # S_a = 0.9, phi_a = 0.009; S_b = 0.1, phi_b = 0.001. C = 1000.
    a = ev("a", 1, 0.8, 100, 300, 500)
    b = ev("b", 0, 0.2, 100, 200, 100)
    plan = DatScheduler().plan([b, a], 1000.0, 0.0)
    # JSON by phi; visuals by psi (a: 0.9/300, b: 0.1/100), each the cheaper unit (eq. 14).
    assert units(plan) == [("a", J), ("b", J), ("a", R), ("b", X)]
    assert plan.bytes == 600
    assert plan.est_time_s == pytest.approx(0.6)


def test_dat_ties_keep_queue_order_and_roi_wins_equal_cost():
    first, second = ev("first", 1, 0.5, 100, 200, 200), ev("second", 1, 0.5, 100, 200, 200)
    assert units(DatScheduler().plan([first, second], 1e6, 0.0)) == [
        ("first", J),
        ("second", J),
        ("first", R),
        ("second", R),
    ]
    assert units(DatScheduler().plan([second, first], 1e6, 0.0))[0] == ("second", J)


def test_dat_zero_bandwidth_plans_nothing():
    assert DatScheduler().plan([ev("a", 1, 1.0, 100, 200, 300)], 0.0, 0.0).units == []


def test_dat_event_larger_than_budget_is_skipped_not_blocking():
    big = ev("big", 1, 1.0, 5000, 6000, 7000)  # phi 0.0002, still highest S
    small = ev("small", 0, 0.1, 100, 800, 900)
    plan = DatScheduler().plan([big, small], 1000.0, 0.0)
    assert units(plan) == [("small", J), ("small", R)]


def test_dat_visual_deadline_is_checked_including_equality():
    params = SchedulerParams(d_vis_s=0.5)
    late = ev("late", 1, 1.0, 100, 450, 900)  # 0.1 + 0.45 > 0.5
    assert units(DatScheduler(params).plan([late], 1000.0, 0.0)) == [("late", J)]
    exact = ev("exact", 1, 1.0, 100, 400, 900)  # 0.1 + 0.4 == 0.5
    assert units(DatScheduler(params).plan([exact], 1000.0, 0.0)) == [("exact", J), ("exact", R)]


def test_dat_visual_needs_remaining_budget():
    a, b = ev("a", 1, 1.0, 400, 700, 800), ev("b", 1, 0.9, 400, 150, 800)
    # r = 200 after both JSON: b's ROI (150) fits, a's (700) does not.
    assert units(DatScheduler().plan([a, b], 1000.0, 0.0)) == [("a", J), ("b", J), ("b", R)]


def test_dat_ignores_events_whose_json_was_sent():
    done = ev("done", 1, 1.0, 100, 200, 300, json_sent=True)
    assert DatScheduler().plan([done], 1e6, 0.0).units == []


# --- baselines -----------------------------------------------------------------------------------


@pytest.fixture
def three() -> list[PendingEvent]:
    return [
        ev("low", 0, 0.2, 100, 300, 600, arrival=0.1),
        ev("high", 1, 0.9, 100, 500, 400, arrival=0.2),
        ev("mid", 1, 0.5, 200, 200, 900, arrival=0.3),
    ]


def test_fixed_box_and_roi_send_only_that_image_for_everyone(three):
    box = FixedBoxScheduler().plan(three, 0.0, 0.0)
    assert units(box) == [("low", X), ("high", X), ("mid", X)]
    assert FixedBoxScheduler.alert_kinds == frozenset({X})
    roi = FixedRoiScheduler().plan(three, 10.0, 0.0)
    assert units(roi) == [("low", R), ("high", R), ("mid", R)]
    assert FixedRoiScheduler.alert_kinds == frozenset({R})


def test_fixed_json_box_ignores_budget_and_priority(three):
    plan = FixedJsonBoxScheduler().plan(three, 100.0, 0.0)
    assert units(plan) == [("low", J), ("low", X), ("high", J), ("high", X), ("mid", J), ("mid", X)]


def test_bandwidth_only_arrival_order_richest_visual_that_fits(three):
    # C = 1000: low json (900 left) + box 600 (300 left); high json (200 left), no image fits;
    # mid json (0 left).
    plan = BandwidthOnlyScheduler().plan(three, 1000.0, 0.0)
    assert units(plan) == [("low", J), ("low", X), ("high", J), ("mid", J)]
    # With more room, the box is preferred to the ROI, and the ROI is the fallback.
    plan = BandwidthOnlyScheduler().plan(three[1:2], 550.0, 0.0)
    assert units(plan) == [("high", J), ("high", X)]
    plan = BandwidthOnlyScheduler().plan(three[2:], 500.0, 0.0)
    assert units(plan) == [("mid", J), ("mid", R)]


def test_priority_only_sorts_by_s_and_ignores_budget(three):
    plan = PriorityOnlyScheduler().plan(three, 1.0, 0.0)
    # S: high 0.95, mid 0.75, low 0.1; cheaper visual each.
    assert units(plan) == [("high", J), ("high", X), ("mid", J), ("mid", R), ("low", J), ("low", R)]


def test_json_only_is_dats_semantic_layer(three):
    plan = JsonOnlyScheduler().plan(three, 250.0, 0.0)
    # phi: high 0.0095, mid 0.00375, low 0.001 -> high; mid (200) does not fit in the 150 left; low does.
    assert units(plan) == [("high", J), ("low", J)]
    assert JsonOnlyScheduler().plan(three, 0.0, 0.0).units == []


# --- Vigil -----------------------------------------------------------------------------------------


def test_greedy_without_switches_is_exactly_dat():
    rng = random.Random(3)
    params = SchedulerParams()
    for _ in range(200):
        pending = [
            ev(
                f"e{i}",
                rng.randint(0, 1),
                round(rng.random(), 3),
                rng.randint(1, 400),
                rng.randint(0, 3000),
                rng.randint(0, 3000),
                json_sent=rng.random() < 0.2,
            )
            for i in range(rng.randint(0, 12))
        ]
        b = rng.choice([0.0, 200.0, 1000.0, 5000.0])
        greedy = hierarchical_greedy(pending, b, b, 0.0, params, carryover=False, deadline_from_arrival=False)
        assert greedy == DatScheduler(params).plan(pending, b, 0.0)


def test_carryover_sends_visual_of_an_earlier_alert_within_its_deadline():
    sent = ev("sent", 1, 1.0, 100, 300, 900, arrival=9.0, json_sent=True)
    expired = ev("expired", 1, 1.0, 100, 300, 900, arrival=8.0, json_sent=True)
    plan = VigilCarryoverScheduler().plan([sent, expired], 1000.0, 10.0)
    # sent: 10 + 0.3 <= 9 + 1.5; expired: 10.3 > 9.5.
    assert units(plan) == [("sent", R)]
    assert VigilCarryoverScheduler.revisits_visual
    assert DatScheduler().plan([sent], 1000.0, 10.0).units == []


def test_carryover_counts_the_deadline_from_arrival_not_from_the_interval_start():
    old = ev("old", 1, 1.0, 100, 400, 900, arrival=9.0)
    # JSON then ROI land at 10.5 = 9.0 + 1.5: on time; one byte more is late, though DAT (0.501 <= 1.5) sends it.
    assert units(VigilCarryoverScheduler().plan([old], 1000.0, 10.0)) == [("old", J), ("old", R)]
    older = ev("older", 1, 1.0, 100, 401, 900, arrival=9.0)
    assert units(VigilCarryoverScheduler().plan([older], 1000.0, 10.0)) == [("older", J)]
    assert units(DatScheduler().plan([older], 1000.0, 10.0)) == [("older", J), ("older", R)]


def test_eventdriven_plans_within_the_remaining_budget():
    s = VigilEventDrivenScheduler()
    assert s.event_driven and not DatScheduler.event_driven
    a, b = ev("a", 1, 1.0, 100, 300, 900, arrival=0.4), ev("b", 1, 0.9, 100, 300, 900, arrival=0.4)
    plan = s.plan_on_arrival([a, b], 1000.0, 0.4, budget_bytes=450.0)
    assert units(plan) == [("a", J), ("b", J)]
    plan = s.plan_on_arrival([a], 1000.0, 0.4, budget_bytes=450.0)
    assert units(plan) == [("a", J), ("a", R)]


def test_carryover_eventdriven_and_alertfirst():
    assert VigilCarryoverEventDrivenScheduler.event_driven and VigilCarryoverEventDrivenScheduler.revisits_visual
    waiting = ev("new", 1, 1.0, 100, 300, 900, arrival=0.5)
    sent = ev("old", 1, 1.0, 100, 200, 900, arrival=0.2, json_sent=True)
    s = VigilAlertFirstScheduler()
    # An alert waits: JSON only, the image waits for the next decision.
    assert units(s.plan_on_arrival([waiting, sent], 1000.0, 0.5, 1000.0)) == [("new", J)]
    # No alert waits: exactly one image, the best by psi.
    done = ev("new", 1, 1.0, 100, 300, 900, arrival=0.5, json_sent=True)
    assert units(s.plan_on_arrival([done, sent], 1000.0, 0.6, 1000.0)) == [("old", R)]
    both = VigilCarryoverEventDrivenScheduler().plan_on_arrival([waiting, sent], 1000.0, 0.5, 1000.0)
    assert units(both) == [("new", J), ("old", R), ("new", R)]
