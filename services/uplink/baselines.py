"""The paper's transmission baselines (DAT section 4.1.3), as schedulers over the same inputs as DAT.

The paper gives each baseline one line; the docstring of each class says how
we read it. Common to all: they plan at the same interval boundaries as DAT
and see the same pending set and bandwidth estimate; "arrival order" is the
queue order (earlier arrival first); the simulator's sender rules (FIFO link,
evidence past its deadline dropped, never an alert) apply to every method.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.uplink.scheduler import PendingEvent, Plan, Scheduler, Unit, UnitKind


def _arrival_order(pending: Sequence[PendingEvent]) -> list[PendingEvent]:
    return sorted((e for e in pending if not e.json_sent), key=lambda e: e.arrival_s)


def _all_of(pending: Sequence[PendingEvent], kinds: Sequence[UnitKind], bandwidth_Bps: float) -> Plan:
    units = [Unit(e.event_id, k, e.cost(k)) for e in _arrival_order(pending) for k in kinds]
    est = sum(u.size_bytes for u in units) / bandwidth_Bps if bandwidth_Bps > 0 else 0.0
    return Plan(units=units, est_time_s=est)


class FixedBoxScheduler(Scheduler):
    """Fixed Box Upload: "always uploads boxed images".

    Reading: the boxed image is the only unit and is itself the alert carrier
    (the cloud learns of the event when the image arrives; no JSON is sent).
    Every pending event's box goes out each interval in arrival order, with
    no budget (no bandwidth adaptation) and no priority; the box is both the
    alert and the visual evidence, and is never dropped.
    """

    name = "fixed_box"
    alert_kinds = frozenset({UnitKind.BOX})

    def plan(self, pending: Sequence[PendingEvent], bandwidth_Bps: float, now_s: float) -> Plan:
        """Every pending event's boxed image, arrival order."""
        return _all_of(pending, [UnitKind.BOX], bandwidth_Bps)


class FixedRoiScheduler(Scheduler):
    """Fixed ROI Upload: "always uploads ROI images".

    Reading: as Fixed Box with the ROI crop as the only unit and alert carrier.
    """

    name = "fixed_roi"
    alert_kinds = frozenset({UnitKind.ROI})

    def plan(self, pending: Sequence[PendingEvent], bandwidth_Bps: float, now_s: float) -> Plan:
        """Every pending event's ROI crop, arrival order."""
        return _all_of(pending, [UnitKind.ROI], bandwidth_Bps)


class FixedJsonBoxScheduler(Scheduler):
    """Fixed JSON+Box Upload: "uploads JSON and boxed images jointly, without bandwidth or priority adaptation".

    Reading: every pending event's JSON immediately followed by its boxed
    image, events in arrival order, no budget. The JSON carries the alert;
    the box is evidence (dropped by the sender once it cannot meet D_vis).
    """

    name = "fixed_json_box"

    def plan(self, pending: Sequence[PendingEvent], bandwidth_Bps: float, now_s: float) -> Plan:
        """JSON then box per event, arrival order."""
        return _all_of(pending, [UnitKind.JSON, UnitKind.BOX], bandwidth_Bps)


class BandwidthOnlyScheduler(Scheduler):
    """Bandwidth-Only Adaptive: "adapts uploads based solely on available bandwidth, without semantic priority".

    Reading: the interval budget C = B * Delta is respected, but events go in
    arrival order and each event's units go together: its JSON if it fits the
    remaining budget (else the event waits), then the richest visual that
    still fits (boxed image, else ROI, else none), as a bandwidth-adaptive
    uploader degrades quality. No priority, no deadline check.
    """

    name = "bandwidth_only"

    def plan(self, pending: Sequence[PendingEvent], bandwidth_Bps: float, now_s: float) -> Plan:
        """Per event in arrival order: JSON, then box or ROI, while the budget lasts."""
        if bandwidth_Bps <= 0:
            return Plan()
        r = bandwidth_Bps * self.params.interval_s
        units: list[Unit] = []
        for e in _arrival_order(pending):
            if r < e.c_json:
                continue
            units.append(Unit(e.event_id, UnitKind.JSON, e.c_json))
            r -= e.c_json
            for kind in (UnitKind.BOX, UnitKind.ROI):
                c = e.cost(kind)
                if 0 < c <= r:
                    units.append(Unit(e.event_id, kind, c))
                    r -= c
                    break
        return Plan(units=units, est_time_s=sum(u.size_bytes for u in units) / bandwidth_Bps)


class PriorityOnlyScheduler(Scheduler):
    """Priority-Only Adaptive: "schedules uploads based on event semantic priority only".

    Reading: events sorted by S_i (eq. 7) descending, ties in arrival order;
    each event's JSON immediately followed by its cheaper visual (eq. 14);
    every pending event every interval, with no budget (no bandwidth
    awareness) and no deadline check. Unlike DAT it neither normalises by
    cost (phi, psi) nor sends all alerts before any evidence.
    """

    name = "priority_only"

    def plan(self, pending: Sequence[PendingEvent], bandwidth_Bps: float, now_s: float) -> Plan:
        """JSON then cheaper visual per event, highest S_i first."""
        beta = self.params.beta
        units: list[Unit] = []
        for e in sorted(_arrival_order(pending), key=lambda e: -e.priority(beta)):
            units.append(Unit(e.event_id, UnitKind.JSON, e.c_json))
            kind, c = e.cheapest_visual()
            if c > 0:
                units.append(Unit(e.event_id, kind, c))
        est = sum(u.size_bytes for u in units) / bandwidth_Bps if bandwidth_Bps > 0 else 0.0
        return Plan(units=units, est_time_s=est)


class JsonOnlyScheduler(Scheduler):
    """JSON-Only: DAT's semantic layer alone (the paper's reference for alert latency with no evidence).

    Reading: Algorithm 1 lines 1-12 (phi_i = S_i / c_json_i, budget C = B * Delta),
    no visual layer.
    """

    name = "json_only"

    def plan(self, pending: Sequence[PendingEvent], bandwidth_Bps: float, now_s: float) -> Plan:
        """JSON units by phi while the budget lasts."""
        if bandwidth_Bps <= 0:
            return Plan()
        beta = self.params.beta
        r = bandwidth_Bps * self.params.interval_s
        units: list[Unit] = []
        for e in sorted(_arrival_order(pending), key=lambda e: -e.priority(beta) / max(e.c_json, 1)):
            if r >= e.c_json:
                units.append(Unit(e.event_id, UnitKind.JSON, e.c_json))
                r -= e.c_json
        return Plan(units=units, est_time_s=sum(u.size_bytes for u in units) / bandwidth_Bps)


BASELINES: tuple[type[Scheduler], ...] = (
    FixedBoxScheduler,
    FixedRoiScheduler,
    FixedJsonBoxScheduler,
    BandwidthOnlyScheduler,
    PriorityOnlyScheduler,
    JsonOnlyScheduler,
)
