"""Every uplink method on the same (trace, scale, events): one metrics dict per method, and the bench CLI.

``vigil bench uplink --trace PATH --scale 0.25 (--pattern burst | --events FILE)
[--seed N] [--horizon-s N]`` prints one JSON object per line per method:
``{"method", "w_alarm_s", "vtr_0_5", "vtr_1", "avg_visual_delay_s",
"undelivered_alerts", "bytes_sent", ...extra}`` (metrics as defined in
:mod:`services.uplink.sim.simulator`).

Methods: ``dat``; the paper's baselines; ``optimal`` (the exact per-interval
optimum of eq. 12, run in the simulator like any method, only when the run has
at most ``optimal_max_events`` events and no interval has more than 40 unsent
events); ``optimal_horizon`` (the exact optimum over the whole run with the
true per-interval bandwidths, replayed in the simulator; only for at most 30
events and 30 intervals); Vigil's ``vigil_*`` methods. When the horizon
optimum ran, every row also carries ``obj_alarm`` / ``obj_visual``, eq. 12's
two objectives over that horizon, so each method's distance from the optimum
can be read off.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from services.uplink.baselines import BASELINES
from services.uplink.scheduler import DatScheduler, PendingEvent, Scheduler, SchedulerParams
from services.uplink.sim.optimal import (
    MAX_HORIZON_EVENTS,
    MAX_HORIZON_INTERVALS,
    InstanceTooLarge,
    OptimalScheduler,
    ReplayScheduler,
    SolverFailed,
    solve_horizon,
)
from services.uplink.sim.simulator import Link, SimConfig, SimResult, horizon_objective, simulate, summarize
from services.uplink.sim.traces import BandwidthTrace, TraceFormatError, load_trace
from services.uplink.sim.workload import PATTERNS, EventFileError, generate, load_events
from services.uplink.vigil_methods import VIGIL_METHODS

HEURISTICS: tuple[type[Scheduler], ...] = (DatScheduler, *BASELINES, *VIGIL_METHODS)
METRIC_KEYS = ("w_alarm_s", "vtr_0_5", "vtr_1", "avg_visual_delay_s", "undelivered_alerts", "bytes_sent")
# Above this many events the per-interval MILP is left out of a run (hundreds of solves).
OPTIMAL_MAX_EVENTS = 2000
# Extra intervals the horizon optimum may use after the last arrival to finish sending.
HORIZON_FLUSH_INTERVALS = 3


def method_names(include_optimal: bool = True) -> list[str]:
    """Every method name, in report order."""
    paper: tuple[type[Scheduler], ...] = (DatScheduler, *BASELINES)
    names = [c.name for c in paper]
    if include_optimal:
        names += [OptimalScheduler.name, ReplayScheduler.name]
    return names + [c.name for c in VIGIL_METHODS]


def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


def _row(result: SimResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"method": result.method}
    row.update({k: _round(v) for k, v in summarize(result).items()})
    row.update(extra or {})
    return row


def run_methods(
    events: Sequence[PendingEvent],
    trace: BandwidthTrace,
    params: SchedulerParams | None = None,
    config: SimConfig | None = None,
    methods: Sequence[str] | None = None,
    optimal_max_events: int = OPTIMAL_MAX_EVENTS,
    notes: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Simulate every method (or those named) on the same inputs; one metrics dict per method."""
    params = params or SchedulerParams()
    config = config or SimConfig()
    wanted = set(methods) if methods is not None else set(method_names())
    unknown = wanted - set(method_names())
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {method_names()}")
    notes = notes if notes is not None else []
    results: dict[str, SimResult] = {}
    for cls in HEURISTICS:
        if cls.name in wanted:
            results[cls.name] = simulate(cls(params), events, trace, config)
    if OptimalScheduler.name in wanted:
        if len(events) > optimal_max_events:
            notes.append(f"optimal skipped: {len(events)} events > {optimal_max_events}")
        else:
            try:
                results[OptimalScheduler.name] = simulate(OptimalScheduler(params), events, trace, config)
            except (InstanceTooLarge, SolverFailed) as exc:
                notes.append(f"optimal skipped: {exc}")
    horizon_k: int | None = None
    if ReplayScheduler.name in wanted and events:
        horizon = config.horizon_s or max(e.arrival_s for e in events) + params.interval_s
        k = math.ceil(horizon / params.interval_s - 1e-9) + HORIZON_FLUSH_INTERVALS
        if len(events) > MAX_HORIZON_EVENTS or k > MAX_HORIZON_INTERVALS:
            notes.append(
                f"optimal_horizon skipped: {len(events)} events / {k} intervals > "
                f"{MAX_HORIZON_EVENTS} / {MAX_HORIZON_INTERVALS}"
            )
        else:
            link = Link(trace.capacity_Bps, config.trace_offset_s)
            delta = params.interval_s
            bws = [link.average(t * delta, (t + 1) * delta) for t in range(k)]
            try:
                sol = solve_horizon(events, bws, params)
                results[ReplayScheduler.name] = simulate(ReplayScheduler(sol.plans, k, params), events, trace, config)
                horizon_k = k
            except SolverFailed as exc:
                notes.append(f"optimal_horizon skipped: {exc}")
    rows = []
    for name in method_names():
        if name not in results:
            continue
        extra: dict[str, Any] = {}
        if horizon_k is not None:
            a, v = horizon_objective(results[name], horizon_k)
            extra = {"obj_alarm": _round(a), "obj_visual": _round(v), "obj_intervals": horizon_k}
        rows.append(_row(results[name], extra))
    return rows


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="vigil bench uplink",
        description="Simulate DAT, the paper's baselines, the exact optimum and Vigil's methods on one trace.",
    )
    ap.add_argument("--trace", required=True, help="bandwidth trace: mahimahi .up/.down, pensieve, or 5G .list")
    ap.add_argument("--scale", type=float, default=1.0, help="bandwidth scale factor (paper: 1.0, 0.5, 0.25)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--pattern", choices=sorted(PATTERNS), help="named arrival pattern")
    src.add_argument("--events", help="JSON-lines event file")
    ap.add_argument("--seed", type=int, default=0, help="seed of the arrival pattern")
    ap.add_argument(
        "--horizon-s",
        type=float,
        default=None,
        help="arrival horizon in seconds (pattern default 300; event file default: up to its last arrival)",
    )
    ap.add_argument("--run", type=int, default=1, help="which 'Run N' of a 5G .list trace")
    ap.add_argument("--bandwidth-estimate", choices=["oracle", "previous"], default="oracle")
    ap.add_argument("--drain-s", type=float, default=60.0, help="simulated time after the horizon")
    ap.add_argument("--methods", default=None, help="comma-separated subset of: " + ", ".join(method_names()))
    return ap


def bench_uplink_main(argv: list[str]) -> int:
    """`vigil bench uplink`: one JSON line per method on stdout; notes and errors on stderr."""
    args = _parser().parse_args(argv)
    try:
        trace = load_trace(args.trace, scale=args.scale, run=args.run)
        if args.events:
            events = load_events(args.events)
            horizon = args.horizon_s
        else:
            horizon = args.horizon_s or 300.0
            events = generate(args.pattern, horizon, seed=args.seed)
        methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
        config = SimConfig(horizon_s=horizon, drain_s=args.drain_s, bandwidth_estimate=args.bandwidth_estimate)
        notes: list[str] = []
        rows = run_methods(events, trace, config=config, methods=methods, notes=notes)
    except (TraceFormatError, EventFileError, ValueError) as exc:
        sys.stderr.write(f"vigil bench uplink: {exc}\n")
        return 2
    for note in notes:
        sys.stderr.write(f"note: {note}\n")
    for row in rows:
        sys.stdout.write(json.dumps(row) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(bench_uplink_main(sys.argv[1:]))
