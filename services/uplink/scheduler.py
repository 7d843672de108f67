"""DAT's semantic- and bandwidth-aware uplink scheduling (section 3.3), as pure code.

Vocabulary shared by every scheduling method (DAT, the baselines, the exact
optimum and Vigil's own), by the simulator and by the uplink service:

* :class:`PendingEvent`: one event waiting at the edge, with its priority
  (level l, score r) and the real byte costs of its three units.
* :class:`Unit`: one transmission unit (json, roi or box) of one event.
* :class:`Plan`: the units chosen for one interval, in transmission order (pi_tau).
* :class:`Scheduler`: ``plan(pending, bandwidth_Bps, now_s) -> Plan``.

Units are bytes and bandwidth is bytes per second throughout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class UnitKind(StrEnum):
    """The three streams DAT schedules per event."""

    JSON = "json"
    ROI = "roi"
    BOX = "box"


@dataclass(frozen=True)
class PendingEvent:
    """An event in the edge queue.

    `json_sent` is True once its JSON reached the cloud; such an event is only
    still pending for methods that may send its visual evidence later.
    """

    event_id: str
    arrival_s: float
    level: int
    score: float
    c_json: int
    c_roi: int
    c_box: int
    json_sent: bool = False

    def priority(self, beta: float) -> float:
        """S_i = beta * l_i + (1 - beta) * r_i (DAT eq. 7)."""
        return beta * self.level + (1.0 - beta) * self.score

    def cheapest_visual(self) -> tuple[UnitKind, int]:
        """k*_i and c_vis_i = min(c_roi, c_box) (DAT eq. 14); ROI wins ties."""
        return (UnitKind.ROI, self.c_roi) if self.c_roi <= self.c_box else (UnitKind.BOX, self.c_box)

    def cost(self, kind: UnitKind) -> int:
        """Byte cost of one of this event's units."""
        return {UnitKind.JSON: self.c_json, UnitKind.ROI: self.c_roi, UnitKind.BOX: self.c_box}[kind]


@dataclass(frozen=True)
class Unit:
    """One unit to transmit."""

    event_id: str
    kind: UnitKind
    size_bytes: int


@dataclass(frozen=True)
class Plan:
    """pi_tau: the units to send this interval in order, and t, their total transmission time."""

    units: list[Unit] = field(default_factory=list)
    est_time_s: float = 0.0

    @property
    def bytes(self) -> int:
        """Total bytes planned."""
        return sum(u.size_bytes for u in self.units)


@dataclass(frozen=True)
class SchedulerParams:
    """Paper defaults: Delta = 1 s, D_vis = 1.5 s; beta weights level against score in eq. 7."""

    interval_s: float = 1.0
    d_vis_s: float = 1.5
    beta: float = 0.5

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {self.interval_s}")
        if self.d_vis_s < 0:
            raise ValueError(f"d_vis_s must be >= 0, got {self.d_vis_s}")
        if not 0.0 < self.beta < 1.0:
            raise ValueError(f"beta must be in (0, 1), got {self.beta}")


class Scheduler(ABC):
    """Chooses, once per interval, which units go out and in what order."""

    name: str = "abstract"
    # True when the method may send an event's visual evidence in a later interval than its JSON,
    # so the uplink keeps such events queued until their visual deadline.
    revisits_visual: bool = False
    # Units whose delivery gives the cloud the alert. Only JSON for DAT; the Fixed Box / Fixed ROI
    # baselines send no JSON, so their image is the alert carrier (and, being the alert, is never dropped).
    alert_kinds: frozenset[UnitKind] = frozenset({UnitKind.JSON})
    # True when the method also wants plan_on_arrival() called mid-interval, when an event arrives
    # while the link is idle, instead of only planning at interval boundaries.
    event_driven: bool = False

    def __init__(self, params: SchedulerParams | None = None) -> None:
        self.params = params or SchedulerParams()

    @abstractmethod
    def plan(self, pending: Sequence[PendingEvent], bandwidth_Bps: float, now_s: float) -> Plan:
        """Units for the interval starting at `now_s`, given the bandwidth estimate for it."""

    def plan_on_arrival(
        self, pending: Sequence[PendingEvent], bandwidth_Bps: float, now_s: float, budget_bytes: float
    ) -> Plan:
        """Units to send at once, mid-interval, within `budget_bytes`; only asked when `event_driven`."""
        return Plan()


class DatScheduler(Scheduler):
    """DAT Algorithm 1, exactly: the online hierarchical greedy.

    Budget C = B * Delta (eq. 8). Semantic layer: events sorted by
    phi_i = S_i / c_json_i (descending; ties keep queue order, i.e. earlier
    arrival first), a JSON is taken while r >= c_json, accumulating
    t += c_json / B. Visual layer: only events whose JSON was taken in this
    interval, each with its cheaper visual unit (eq. 14), sorted by
    psi_i = S_i / c_vis_i, taken only if r >= c_vis and t + c_vis / B <= D_vis.
    Events whose JSON did not fit are simply left pending by the caller.
    Zero bandwidth gives an empty plan. Events whose JSON was already sent
    are ignored (DAT never revisits visual evidence).
    """

    name = "dat"

    def plan(self, pending: Sequence[PendingEvent], bandwidth_Bps: float, now_s: float) -> Plan:
        """Algorithm 1 over the pending set."""
        if bandwidth_Bps <= 0:
            return Plan()
        beta, b = self.params.beta, bandwidth_Bps
        r = b * self.params.interval_s
        t = 0.0
        units: list[Unit] = []
        candidates = [e for e in pending if not e.json_sent]
        # sorted() is stable: equal phi keeps the queue (arrival) order.
        by_phi = sorted(candidates, key=lambda e: -e.priority(beta) / max(e.c_json, 1))
        chosen: list[PendingEvent] = []
        for e in by_phi:
            if r >= e.c_json:
                units.append(Unit(e.event_id, UnitKind.JSON, e.c_json))
                r -= e.c_json
                t += e.c_json / b
                chosen.append(e)
        by_psi = sorted(chosen, key=lambda e: -e.priority(beta) / max(e.cheapest_visual()[1], 1))
        for e in by_psi:
            kind, c_vis = e.cheapest_visual()
            if c_vis > 0 and r >= c_vis and t + c_vis / b <= self.params.d_vis_s:
                units.append(Unit(e.event_id, kind, c_vis))
                r -= c_vis
                t += c_vis / b
        return Plan(units=units, est_time_s=t)
