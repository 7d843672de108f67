"""The exact optimum of DAT's eq. 12, per interval and over a short horizon, by MILP (HiGHS via scipy).

Both problems are lexicographic: first minimise A = sum_i S_i * T_alarm_i, then,
with A fixed at its optimum (up to a relative 1e-7), maximise
V = sum_i S_i * z_vis_i. Two MILP solves, each to proven optimality
(``mip_rel_gap = 0``).

Per interval (:func:`solve_interval`, method ``optimal``)
----------------------------------------------------------
Eq. 12 as written, for the pending events whose JSON is not yet sent, with
bandwidth B, budget C = B * Delta, T measured from the interval start (eq. 10:
cumulative bytes up to and including the unit / B). An event whose JSON is not
sent this interval gets T_alarm = 2 * Delta (delivered, at best, at the end of
the next interval); without such a term "send nothing" would minimise A.
Every sent JSON has T <= Delta < 2 Delta, so sending more alerts always pays.

Order is modelled exactly without position variables, by three exchange
arguments (S_i >= 0, costs >= 0):

1. All selected JSON precede all visual units: moving an image before a JSON
   delays that alert and helps no other alert, and A dominates V.
2. Among the selected JSON, Smith's rule is optimal: descending
   phi_i = S_i / c_json_i (the order DAT's semantic layer uses). With that
   fixed order, T_i = (c_i x_i + sum_{j before i} c_j x_i x_j) / B; the
   products are linearised by continuous y_ij >= x_i + x_j - 1, y_ij >= 0
   (their objective coefficients are positive, so y_ij = x_i x_j at optimum).
3. A visual unit that misses D_vis earns nothing, so only on-time visuals are
   sent (z_i); the cheaper of ROI / box (eq. 14) is never worse. With one
   common deadline, a set of visuals is on time iff the last one is:
   sum_j c_json_j x_j + sum_j c_vis_j z_j <= D_vis * B (enforced when any z = 1).

Variables: x_i, z_i binary; y_ij continuous; one binary "any visual".
Constraints: budget, z_i <= x_i, the deadline above, the y_ij cuts.

Over a horizon (:func:`solve_horizon`, method ``optimal_horizon``)
-----------------------------------------------------------------
All intervals tau = 0..K-1 jointly, with the true per-interval bandwidths B_tau
of the trace (budgets C_tau = B_tau * Delta). Event i may send its JSON in any
one interval tau >= ceil(a_i / Delta) (T_alarm = tau*Delta - a_i + prefix/B_tau;
never sent: (K+1) * Delta - a_i), and its visual in the same or any later
interval while it can meet a_i + D_vis (the deadline from arrival, as the
simulator counts it). Within an interval the same exchange arguments hold:
JSON first in Smith order, then on-time visuals in earliest-deadline order
(EDD meets every deadline of a set if any order does), one deadline row per
(event, interval) with big-M = C_tau. No unit spans an interval boundary and
decisions happen at boundaries, so this bounds every interval-based method
that respects C_tau (DAT, json_only, bandwidth_only, vigil_carryover) when the
simulator gives them the true B_tau; event-driven methods decide mid-interval
and can beat it.

Limits: per interval, at most ``MAX_INTERVAL_EVENTS`` = 40 unsent events
(~800 linearisation variables; solves in well under a second);
horizon: at most ``MAX_HORIZON_EVENTS`` = 30 events and
``MAX_HORIZON_INTERVALS`` = 30 intervals. Larger instances raise
:class:`InstanceTooLarge` and the harness leaves the row out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from services.uplink.scheduler import DatScheduler, PendingEvent, Plan, Scheduler, SchedulerParams, Unit, UnitKind

MAX_INTERVAL_EVENTS = 40
MAX_HORIZON_EVENTS = 30
MAX_HORIZON_INTERVALS = 30
TIME_LIMIT_S = 30.0
_REL_TOL = 1e-7
VISUAL_KINDS = frozenset({UnitKind.ROI, UnitKind.BOX})


class InstanceTooLarge(ValueError):
    """The instance is above the size the exact solver is run on."""


class SolverFailed(RuntimeError):
    """HiGHS did not prove optimality (time limit or numerical trouble)."""


@dataclass(frozen=True)
class Objective:
    """Eq. 12's two objectives: alarm (A, minimised) and visual (V, maximised)."""

    alarm: float
    visual: float

    def no_worse_than(self, other: Objective, tol: float = 1e-6) -> bool:
        """Lexicographically <= `other` (A first, then -V), with a relative tolerance."""
        scale = tol * max(1.0, abs(self.alarm), abs(other.alarm))
        if self.alarm < other.alarm - scale:
            return True
        if self.alarm > other.alarm + scale:
            return False
        return self.visual >= other.visual - tol * max(1.0, abs(other.visual))


class _Model:
    """A MILP under construction: variables with bounds and integrality, sparse rows."""

    def __init__(self) -> None:
        self.lb: list[float] = []
        self.ub: list[float] = []
        self.integer: list[int] = []
        self.rows: list[tuple[dict[int, float], float, float]] = []

    def var(self, lb: float = 0.0, ub: float = 1.0, integer: bool = True) -> int:
        self.lb.append(lb)
        self.ub.append(ub)
        self.integer.append(1 if integer else 0)
        return len(self.lb) - 1

    def row(self, coeffs: Mapping[int, float], lo: float = -np.inf, hi: float = np.inf) -> None:
        self.rows.append((dict(coeffs), lo, hi))

    def _constraints(self, extra: Sequence[tuple[dict[int, float], float, float]]) -> LinearConstraint:
        rows = [*self.rows, *extra]
        r, c, v = [], [], []
        for k, (coeffs, _, _) in enumerate(rows):
            for j, a in coeffs.items():
                r.append(k)
                c.append(j)
                v.append(a)
        a_mat = coo_matrix((v, (r, c)), shape=(len(rows), len(self.lb))).tocsr()
        return LinearConstraint(a_mat, [lo for _, lo, _ in rows], [hi for _, _, hi in rows])

    def solve(
        self, cost: Mapping[int, float], extra: Sequence[tuple[dict[int, float], float, float]] = ()
    ) -> np.ndarray:
        c = np.zeros(len(self.lb))
        for j, a in cost.items():
            c[j] += a
        res = milp(
            c,
            integrality=np.array(self.integer),
            bounds=Bounds(np.array(self.lb), np.array(self.ub)),
            constraints=self._constraints(extra) if (self.rows or extra) else None,
            options={"mip_rel_gap": 0.0, "time_limit": TIME_LIMIT_S},
        )
        if res.status != 0 or res.x is None:
            raise SolverFailed(f"HiGHS: {res.message}")
        return np.asarray(res.x)


def _lexicographic(model: _Model, alarm: dict[int, float], alarm_const: float, visual: dict[int, float]) -> np.ndarray:
    """Solve min A, then max V subject to A <= A* (1 + tol)."""
    x1 = model.solve(alarm)
    a_star = sum(alarm.get(j, 0.0) * x1[j] for j in alarm) + alarm_const
    if not visual:
        return x1
    slack = _REL_TOL * max(1.0, abs(a_star))
    cap = ({**alarm}, -np.inf, a_star - alarm_const + slack)
    return model.solve({j: -v for j, v in visual.items()}, extra=[cap])


def _phi_order(events: Sequence[PendingEvent], beta: float) -> list[PendingEvent]:
    return sorted(events, key=lambda e: -e.priority(beta) / max(e.c_json, 1))


def interval_objective(
    pending: Sequence[PendingEvent],
    plan: Plan,
    bandwidth_Bps: float,
    params: SchedulerParams,
    alert_kinds: Collection[UnitKind] = frozenset({UnitKind.JSON}),
) -> Objective:
    """Eq. 12's objectives of `plan` for one interval, evaluated as the per-interval MILP counts them.

    Units are sent back to back from the interval start at `bandwidth_Bps`; only
    the prefix of the plan that fits the budget C = B * Delta counts as sent
    (a plan that ignores the budget is cut where eq. 12's budget row would cut
    it). Unsent alerts cost 2 * Delta; a visual counts if it is through by D_vis.
    """
    delta, d_vis, beta = params.interval_s, params.d_vis_s, params.beta
    events = {e.event_id: e for e in pending if not e.json_sent}
    budget = bandwidth_Bps * delta
    alarm: dict[str, float] = {}
    visual: dict[str, float] = {}
    cum = 0.0
    if bandwidth_Bps > 0:
        for u in plan.units:
            cum += u.size_bytes
            if cum > budget * (1 + 1e-12) + 1e-9:
                break
            if u.event_id not in events:
                continue
            done = cum / bandwidth_Bps
            if u.kind in alert_kinds:
                alarm.setdefault(u.event_id, done)
            if u.kind in VISUAL_KINDS:
                visual.setdefault(u.event_id, done)
    a = sum(e.priority(beta) * alarm.get(i, 2 * delta) for i, e in events.items())
    v = sum(e.priority(beta) for i, e in events.items() if i in visual and visual[i] <= d_vis + 1e-9)
    return Objective(a, v)


def solve_interval(pending: Sequence[PendingEvent], bandwidth_Bps: float, params: SchedulerParams) -> Plan:
    """The exact lexicographic optimum of eq. 12 for one interval (see the module docstring)."""
    events = _phi_order([e for e in pending if not e.json_sent], params.beta)
    n = len(events)
    if n > MAX_INTERVAL_EVENTS:
        raise InstanceTooLarge(f"{n} unsent events > {MAX_INTERVAL_EVENTS} for the per-interval MILP")
    if bandwidth_Bps <= 0 or n == 0:
        return Plan()
    b, delta, d_vis, beta = bandwidth_Bps, params.interval_s, params.d_vis_s, params.beta
    budget = b * delta
    s = [e.priority(beta) for e in events]
    cj = [float(e.c_json) for e in events]
    cv = [float(e.cheapest_visual()[1]) for e in events]
    if sum(cj) + sum(cv) <= min(budget, d_vis * b):
        # Everything fits on time: all JSON in Smith order, then every visual, is optimal for both objectives.
        return _plan_of(events, range(n), sorted(range(n), key=lambda i: cv[i]), b)
    m = _Model()
    x = [m.var() for _ in events]
    z = [m.var(ub=1.0 if cv[i] > 0 else 0.0) for i in range(n)]
    any_visual = m.var()
    penalty = 2 * delta
    alarm: dict[int, float] = {x[i]: s[i] * (cj[i] / b - penalty) for i in range(n)}
    for i in range(n):
        for j in range(i):
            y = m.var(integer=False)
            alarm[y] = s[i] * cj[j] / b
            m.row({y: 1.0, x[i]: -1.0, x[j]: -1.0}, lo=-1.0)
        m.row({z[i]: 1.0, x[i]: -1.0}, hi=0.0)
        m.row({z[i]: 1.0, any_visual: -1.0}, hi=0.0)
    load = {**{x[i]: cj[i] for i in range(n)}, **{z[i]: cv[i] for i in range(n)}}
    m.row(load, hi=budget)
    if d_vis * b < budget:
        m.row({**load, any_visual: budget}, hi=d_vis * b + budget)
    sol = _lexicographic(m, alarm, sum(si * penalty for si in s), {z[i]: s[i] for i in range(n)})
    on_time = sorted((i for i in range(n) if sol[z[i]] > 0.5), key=lambda i: cv[i])
    return _plan_of(events, [i for i in range(n) if sol[x[i]] > 0.5], on_time, b)


def _plan_of(events: Sequence[PendingEvent], json_idx: Iterable[int], visual_idx: Iterable[int], b: float) -> Plan:
    units = [Unit(events[i].event_id, UnitKind.JSON, events[i].c_json) for i in json_idx]
    for i in visual_idx:
        kind, c = events[i].cheapest_visual()
        if c > 0:
            units.append(Unit(events[i].event_id, kind, c))
    return Plan(units=units, est_time_s=sum(u.size_bytes for u in units) / b)


class OptimalScheduler(Scheduler):
    """``optimal``: the exact per-interval optimum of eq. 12 (raises InstanceTooLarge above the limit)."""

    name = "optimal"

    def plan(self, pending: Sequence[PendingEvent], bandwidth_Bps: float, now_s: float) -> Plan:
        """Solve eq. 12 for this interval."""
        return solve_interval(pending, bandwidth_Bps, self.params)


@dataclass(frozen=True)
class HorizonSolution:
    """Per-interval plans of the horizon optimum and its objective value."""

    plans: dict[int, Plan]
    objective: Objective
    n_intervals: int
    variables: int = 0
    rows: int = 0
    solve_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def solve_horizon(
    events: Sequence[PendingEvent], bandwidths_Bps: Sequence[float], params: SchedulerParams
) -> HorizonSolution:
    """The exact lexicographic optimum over intervals 0..K-1 with the given per-interval bandwidths."""
    k_n = len(bandwidths_Bps)
    n = len(events)
    if n > MAX_HORIZON_EVENTS or k_n > MAX_HORIZON_INTERVALS:
        raise InstanceTooLarge(
            f"{n} events / {k_n} intervals > {MAX_HORIZON_EVENTS} / {MAX_HORIZON_INTERVALS} for the horizon MILP"
        )
    delta, d_vis, beta = params.interval_s, params.d_vis_s, params.beta
    evs = _phi_order(events, beta)
    s = [e.priority(beta) for e in evs]
    a = [e.arrival_s for e in evs]
    cj = [float(e.c_json) for e in evs]
    cv = [float(e.cheapest_visual()[1]) for e in evs]
    edd = sorted(range(n), key=lambda i: (a[i], i))
    m = _Model()
    x: dict[tuple[int, int], int] = {}
    z: dict[tuple[int, int], int] = {}
    for i in range(n):
        first = max(0, math.ceil(a[i] / delta - 1e-9))
        for tau in range(first, k_n):
            if bandwidths_Bps[tau] <= 0:
                continue
            x[i, tau] = m.var()
            if cv[i] > 0 and tau * delta < a[i] + d_vis and cv[i] <= bandwidths_Bps[tau] * (a[i] + d_vis - tau * delta):
                z[i, tau] = m.var()
    alarm: dict[int, float] = {}
    const = 0.0
    for i in range(n):
        p_i = (k_n + 1) * delta - a[i]
        const += s[i] * p_i
        for tau in range(k_n):
            if (i, tau) in x:
                alarm[x[i, tau]] = s[i] * (tau * delta - a[i] + cj[i] / bandwidths_Bps[tau] - p_i)
        m.row({x[i, tau]: 1.0 for tau in range(k_n) if (i, tau) in x}, hi=1.0)
        m.row({z[i, tau]: 1.0 for tau in range(k_n) if (i, tau) in z}, hi=1.0)
        for tau in range(k_n):
            if (i, tau) in z:
                earlier = {x[i, t]: -1.0 for t in range(tau + 1) if (i, t) in x}
                m.row({z[i, tau]: 1.0, **earlier}, hi=0.0)
    for tau in range(k_n):
        b = bandwidths_Bps[tau]
        if b <= 0:
            continue
        here = [i for i in range(n) if (i, tau) in x]
        for pos, i in enumerate(here):
            for j in here[:pos]:
                y = m.var(integer=False)
                alarm[y] = s[i] * cj[j] / b
                m.row({y: 1.0, x[i, tau]: -1.0, x[j, tau]: -1.0}, lo=-1.0)
        json_load = {x[i, tau]: cj[i] for i in here}
        budget = b * delta
        m.row({**json_load, **{z[i, tau]: cv[i] for i in range(n) if (i, tau) in z}}, hi=budget)
        vis_here = [i for i in edd if (i, tau) in z]
        for pos, i in enumerate(vis_here):
            row = {**json_load, **{z[j, tau]: cv[j] for j in vis_here[: pos + 1]}}
            row[z[i, tau]] = row.get(z[i, tau], 0.0) + budget
            m.row(row, hi=b * (a[i] + d_vis - tau * delta) + budget)
    if not m.lb:
        return HorizonSolution({}, Objective(const, 0.0), k_n)
    t0 = time.perf_counter()
    sol = _lexicographic(m, alarm, const, {z[key]: s[key[0]] for key in z})
    solve_s = time.perf_counter() - t0
    plans: dict[int, Plan] = {}
    for tau in range(k_n):
        units = [
            Unit(evs[i].event_id, UnitKind.JSON, evs[i].c_json)
            for i in range(n)
            if (i, tau) in x and sol[x[i, tau]] > 0.5
        ]
        for i in edd:
            if (i, tau) in z and sol[z[i, tau]] > 0.5:
                kind, c = evs[i].cheapest_visual()
                units.append(Unit(evs[i].event_id, kind, c))
        if units:
            plans[tau] = Plan(units=units, est_time_s=sum(u.size_bytes for u in units) / bandwidths_Bps[tau])
    a_val = const + sum(coef * sol[j] for j, coef in alarm.items())
    v_val = sum(s[key[0]] * sol[j] for key, j in z.items())
    return HorizonSolution(plans, Objective(a_val, v_val), k_n, len(m.lb), len(m.rows), solve_s)


class ReplayScheduler(Scheduler):
    """Replays precomputed per-interval plans (the horizon optimum); DAT after the last planned interval."""

    name = "optimal_horizon"
    revisits_visual = True

    def __init__(self, plans: Mapping[int, Plan], n_intervals: int, params: SchedulerParams | None = None) -> None:
        super().__init__(params)
        self._plans = dict(plans)
        self._n = n_intervals
        self._after = DatScheduler(self.params)

    def plan(self, pending: Sequence[PendingEvent], bandwidth_Bps: float, now_s: float) -> Plan:
        """The stored plan of the interval starting at `now_s`."""
        tau = round(now_s / self.params.interval_s)
        if tau >= self._n:
            return self._after.plan(pending, bandwidth_Bps, now_s)
        return self._plans.get(tau, Plan())
