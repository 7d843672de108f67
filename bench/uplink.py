"""make bench-uplink: DAT's Table 3 grid (patterns x bandwidth scales x real traces) for every method, plus costs.

Every method (DAT, the paper's baselines, the per-interval MILP optimum and
Vigil's methods) runs in the same simulator on the same events and the same
trace (services/uplink/sim/simulator.py documents the model and the metrics).
Traces are read in place from ../shared/data/traces/; the default set has
one of each format: mahimahi ATT-LTE-driving (0.83 Mbit/s mean, with
outages), pensieve norway_car_2 (1.0 Mbit/s, HSDPA in a car) and 5G-MeMU
uplink_walking (49 Mbit/s mmWave, run 1).

Outputs: JSON lines on stdout (one per method and grid cell, then the small
instances against the horizon optimum, then the scheduler cost per interval),
and bench-results/uplink.md (tables, with the paper's Table 3 beside ours) and
bench-results/uplink.png.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.harness import ROOT, SHARED_DATA, emit, machine_info, ratio
from services.uplink.scheduler import DatScheduler, PendingEvent, Plan, SchedulerParams
from services.uplink.sim.harness import method_names, run_methods
from services.uplink.sim.optimal import MAX_INTERVAL_EVENTS, solve_interval
from services.uplink.sim.simulator import SimConfig
from services.uplink.sim.traces import BandwidthTrace, load_trace
from services.uplink.sim.workload import default_size_samples, generate
from services.uplink.vigil_methods import VIGIL_METHODS

TRACES_DIR = SHARED_DATA / "traces"
DEFAULT_TRACES = [
    "ATT-LTE-driving.up",
    "pensieve/norway_car_2",
    "5g_uplink/uplink_walking__5g__away.list",
]
OUT_DIR = ROOT / "bench-results"

# DAT Table 3 as printed (W-Alarm s, VTR@0.5s %, VTR@1s %, Avg_Visual_Delay s; None = "-").
PaperRow = tuple[float, float, float, float | None]
PAPER_TABLE3: dict[str, tuple[str, float, dict[str, PaperRow]]] = {
    "A": (
        "medium",
        0.25,
        {
            "bandwidth_only": (0.0543, 94.67, 95.17, 0.1742),
            "priority_only": (0.0509, 99.83, 99.83, 0.0637),
            "dat": (0.0508, 99.83, 100.0, 0.0368),
        },
    ),
    "B": (
        "burst",
        0.25,
        {
            "bandwidth_only": (0.2361, 80.17, 89.17, 0.4392),
            "priority_only": (0.1704, 92.33, 98.00, 0.2153),
            "dat": (0.0531, 98.33, 99.17, 0.1081),
        },
    ),
    "C": (
        "burst",
        0.25,
        {
            "json_only": (0.0531, 0.00, 0.00, None),
            "fixed_box": (0.6338, 82.00, 96.33, 0.3436),
            "fixed_roi": (0.6512, 77.50, 92.83, 0.3382),
            "fixed_json_box": (0.2602, 81.83, 96.33, 0.3460),
            "dat": (0.0531, 98.33, 99.17, 0.1081),
        },
    ),
}
BLOCK_TITLES = {
    "A": "Block A. Medium (0.25x)",
    "B": "Block B. Burst (0.25x)",
    "C": "Block C. Alert-carrier design study under Burst (0.25x)",
}
NUMERIC = ("w_alarm_s", "vtr_0_5", "vtr_1", "avg_visual_delay_s", "undelivered_alerts", "bytes_sent", "p95_alarm_s")


def mean_rows(per_seed: Sequence[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per method, the mean of each metric over the seeds it ran on (None where any seed had None).

    A method skipped on some seeds (the MILP above its size limit) also gets
    ``dat_w_alarm_same_seeds``, DAT's W-Alarm over the same seeds, so ratios compare like with like.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in method_names():
        ran = [(k, r) for k, rows in enumerate(per_seed) for r in rows if r["method"] == name]
        if not ran:
            continue
        agg: dict[str, Any] = {"method": name, "seeds": len(ran), "of_seeds": len(per_seed)}
        for key in NUMERIC:
            vals = [r.get(key) for _, r in ran]
            agg[key] = None if any(v is None for v in vals) else round(statistics.fmean(vals), 4)  # type: ignore[arg-type]
        if len(ran) < len(per_seed):
            same = {k for k, _ in ran}
            dat = [r["w_alarm_s"] for k, rows in enumerate(per_seed) if k in same for r in rows if r["method"] == "dat"]
            agg["dat_w_alarm_same_seeds"] = round(statistics.fmean(dat), 4) if dat else None
        out[name] = agg
    return out


def run_grid(
    traces: dict[str, BandwidthTrace],
    patterns: Sequence[str],
    scales: Sequence[float],
    seeds: int,
    horizon_s: float,
    estimate: str = "oracle",
) -> dict[tuple[str, str, float], dict[str, dict[str, Any]]]:
    """The Table-3 grid: metrics per (trace, pattern, scale) and method, averaged over seeds."""
    grid: dict[tuple[str, str, float], dict[str, dict[str, Any]]] = {}
    for tname, trace in traces.items():
        for pattern in patterns:
            for scale in scales:
                per_seed = []
                for seed in range(seeds):
                    events = generate(pattern, horizon_s, seed=seed)
                    notes: list[str] = []
                    config = SimConfig(horizon_s=horizon_s, bandwidth_estimate=estimate)  # type: ignore[arg-type]
                    # The horizon optimum cannot solve 300 s runs; run_small() compares against it.
                    methods = [m for m in method_names() if m != "optimal_horizon"]
                    per_seed.append(
                        run_methods(events, trace.scaled(scale), config=config, methods=methods, notes=notes)
                    )
                    for note in notes:
                        sys.stderr.write(f"{tname} {pattern} {scale}x seed {seed}: {note}\n")
                cell = mean_rows(per_seed)
                grid[tname, pattern, scale] = cell
                for row in cell.values():
                    emit({"bench": "uplink_grid", "trace": tname, "pattern": pattern, "scale": scale, **row})
    return grid


def run_small(traces: dict[str, BandwidthTrace], seeds: int, window_s: float = 20.0) -> list[dict[str, Any]]:
    """Short instances (<= 30 events) where the horizon MILP runs: each method's objectives against the optimum."""
    out: list[dict[str, Any]] = []
    for tname, trace in traces.items():
        for pattern in ("medium", "burst"):
            for seed in range(seeds):
                events = generate(pattern, window_s, seed=100 + seed)[:30]
                if not events:
                    continue
                horizon = min(window_s, max(e.arrival_s for e in events) + 1.0)
                rows = run_methods(events, trace.scaled(0.25), config=SimConfig(horizon_s=horizon))
                ref = next((r for r in rows if r["method"] == "optimal_horizon"), None)
                if ref is None:
                    continue
                for r in rows:
                    rec = {
                        "bench": "uplink_vs_horizon_optimum",
                        "trace": tname,
                        "pattern": pattern,
                        "seed": 100 + seed,
                        "events": len(events),
                        "method": r["method"],
                        "obj_alarm": r["obj_alarm"],
                        "obj_visual": r["obj_visual"],
                        "alarm_ratio_vs_opt": ratio(r["obj_alarm"], ref["obj_alarm"], 4),
                        "visual_ratio_vs_opt": ratio(r["obj_visual"], ref["obj_visual"], 4),
                        "w_alarm_s": r["w_alarm_s"],
                        "vtr_1": r["vtr_1"],
                    }
                    emit(rec)
                    out.append(rec)
    return out


def _pending(n: int, rng: random.Random, now: float) -> list[PendingEvent]:
    samples = default_size_samples()
    out = []
    for i in range(n):
        s = rng.choice(samples)
        out.append(
            PendingEvent(
                f"e{i}", now - rng.uniform(0, 1.5), s.level, s.score, s.c_json, s.c_roi, s.c_box, json_sent=i % 4 == 3
            )
        )
    return out


def time_call(fn: Callable[[], Plan], min_total_s: float = 0.2, max_reps: int = 200) -> float:
    """Median seconds of `fn()` over repetitions lasting at least `min_total_s`."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_total_s and len(times) < max_reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_costs(sizes: Sequence[int], bandwidth_Bps: float) -> list[dict[str, Any]]:
    """Scheduler cost per interval (one plan() call) at each pending-set size."""
    params = SchedulerParams()
    rng = random.Random(7)
    out: list[dict[str, Any]] = []
    schedulers = [DatScheduler(params), *(cls(params) for cls in VIGIL_METHODS)]
    for n in sizes:
        pending = _pending(n, rng, now=100.0)
        for s in schedulers:
            sec = time_call(lambda s=s, pending=pending: s.plan(pending, bandwidth_Bps, 100.0))  # type: ignore[misc]
            rec = {"bench": "uplink_cost", "method": s.name, "pending": n, "us_per_interval": round(sec * 1e6, 1)}
            emit(rec)
            out.append(rec)
        unsent = [e for e in pending if not e.json_sent]
        if len(unsent) <= MAX_INTERVAL_EVENTS:
            sec = time_call(
                lambda pending=pending: solve_interval(pending, bandwidth_Bps, params),  # type: ignore[misc]
                min_total_s=0.5,
                max_reps=20,
            )
            rec = {"bench": "uplink_cost", "method": "optimal", "pending": n, "us_per_interval": round(sec * 1e6, 1)}
        else:
            rec = {
                "bench": "uplink_cost",
                "method": "optimal",
                "pending": n,
                "us_per_interval": None,
                "note": f"{len(unsent)} unsent events > the MILP limit of {MAX_INTERVAL_EVENTS}",
            }
        emit(rec)
        out.append(rec)
    return out


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if pct:
        return f"{100 * v:.2f}"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def markdown(
    grid: dict[tuple[str, str, float], dict[str, dict[str, Any]]],
    traces: dict[str, BandwidthTrace],
    patterns: Sequence[str],
    scales: Sequence[float],
    small: list[dict[str, Any]],
    costs: list[dict[str, Any]],
    meta: dict[str, Any],
) -> str:
    """The report: Table-3 blocks (paper beside measured), the full grid, the optimum gap, the costs."""
    lines = [
        "# Uplink scheduling: DAT Table 3 grid",
        "",
        f"Events: {meta['horizon_s']:.0f} s of each pattern per seed, {meta['seeds']} seed(s), sizes measured from "
        "real gating output (services/uplink/sim/event_sizes.json). Delta = 1 s, D_vis = 1.5 s, B_tau = "
        + (
            "the trace's average over the interval (oracle, as the paper). "
            if meta["estimate"] == "oracle"
            else "the previous interval's average (no foresight). "
        )
        + "Latencies count from the event's arrival (waiting for the interval boundary counts); VTR over all "
        "events. Runtime: "
        f"{meta['runtime_s']:.0f} s on {meta['machine']}.",
        "",
        "Traces: "
        + ", ".join(f"`{n}` ({t.source_format}, {t.mean_Bps * 8 / 1e6:.2f} Mbit/s)" for n, t in traces.items()),
        "",
    ]
    extra_rows = ["optimal", *(c.name for c in VIGIL_METHODS)]
    for block, (pattern, scale, paper) in PAPER_TABLE3.items():
        if pattern not in patterns or scale not in scales:
            continue
        lines += [f"## {BLOCK_TITLES[block]}", ""]
        lines += [
            "| trace | method | W-Alarm (s) | VTR@0.5s (%) | VTR@1s (%) | Avg visual delay (s) | W-Alarm / DAT "
            "| paper W-Alarm | paper VTR@0.5s | paper VTR@1s | paper delay | paper W-Alarm / DAT |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for tname in traces:
            cell = grid.get((tname, pattern, scale), {})
            dat = cell.get("dat", {}).get("w_alarm_s")
            for m in [*paper, *extra_rows]:
                row = cell.get(m)
                if row is None:
                    continue
                p = paper.get(m)
                ref = row.get("dat_w_alarm_same_seeds", dat)
                ratio = row["w_alarm_s"] / ref if ref and row["w_alarm_s"] is not None else None
                pratio = p[0] / paper["dat"][0] if p else None
                label = m if row["seeds"] == row["of_seeds"] else f"{m} ({row['seeds']}/{row['of_seeds']} seeds)"
                lines.append(
                    f"| {tname} | {label} | {_fmt(row['w_alarm_s'])} | {_fmt(row['vtr_0_5'], True)} | "
                    f"{_fmt(row['vtr_1'], True)} | {_fmt(row['avg_visual_delay_s'])} | {_fmt(ratio)} | "
                    + (f"{p[0]:.4f} | {p[1]:.2f} | {p[2]:.2f} | {_fmt(p[3])} | {_fmt(pratio)} |" if p else "| | | | |")
                )
        lines.append("")
    lines += [
        "## Full grid: W-Alarm (s) / VTR@1s (%) / undelivered alerts",
        "",
        "`*`: mean over fewer seeds (the per-interval MILP skips a run in which some interval has more than "
        f"{MAX_INTERVAL_EVENTS} unsent events).",
        "",
    ]
    for tname in traces:
        cols = [(p, s) for p in patterns for s in scales]
        lines += [f"### {tname}", ""]
        lines.append("| method | " + " | ".join(f"{p} {s}x" for p, s in cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        for m in method_names():
            cells = [grid.get((tname, p, s), {}).get(m) for p, s in cols]
            if all(c is None for c in cells):
                continue
            lines.append(
                f"| {m} | "
                + " | ".join(
                    "-"
                    if c is None
                    else f"{_fmt(c['w_alarm_s'])} / {_fmt(c['vtr_1'], True)}"
                    + (f" / {c['undelivered_alerts']:.0f}" if c["undelivered_alerts"] else "")
                    + ("*" if c["seeds"] < c["of_seeds"] else "")
                    for c in cells
                )
                + " |"
            )
        lines.append("")
    if small:
        lines += [
            "## Distance from the exact horizon optimum (<= 30 events, 0.25x, eq. 12 objectives)",
            "",
            "Mean over instances of A / A* (alarm objective, lower is better; < 1 only possible for event-driven "
            "methods, which decide mid-interval) and V / V* (visual objective, higher is better; methods that "
            "ignore the budget, such as priority_only, can exceed 1 on V by overrunning the interval, at a worse A).",
            "",
            "| method | A / A* | V / V* | instances |",
            "|---|---|---|---|",
        ]
        for m in method_names():
            rs = [r for r in small if r["method"] == m and r["alarm_ratio_vs_opt"] is not None]
            if not rs:
                continue
            vs = [r["visual_ratio_vs_opt"] for r in rs if r["visual_ratio_vs_opt"] is not None]
            a = statistics.fmean(r["alarm_ratio_vs_opt"] for r in rs)
            lines.append(f"| {m} | {a:.4f} | {statistics.fmean(vs) if vs else 0:.4f} | {len(rs)} |")
        lines.append("")
    if costs:
        sizes = sorted({c["pending"] for c in costs})
        lines += [
            "## Scheduler cost per interval (one plan() call, microseconds, median)",
            "",
            "| method | " + " | ".join(str(n) for n in sizes) + " |",
            "|---|" + "---|" * len(sizes),
        ]
        for m in dict.fromkeys(c["method"] for c in costs):
            vals = {c["pending"]: c["us_per_interval"] for c in costs if c["method"] == m}
            lines.append(
                f"| {m} | " + " | ".join("n/a" if vals.get(n) is None else f"{vals[n]:,.0f}" for n in sizes) + " |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(
    grid: dict[tuple[str, str, float], dict[str, dict[str, Any]]],
    traces: Sequence[str],
    scales: Sequence[float],
    pattern: str,
    path: Path,
) -> None:
    """W-Alarm and VTR@1s against bandwidth scale, per trace, for one pattern."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(traces), figsize=(5 * len(traces), 8), squeeze=False)
    xs = sorted(scales)
    colours = [plt.get_cmap("tab20")(i) for i in range(20)]
    for col, tname in enumerate(traces):
        for i, m in enumerate(method_names()):
            w = [grid.get((tname, pattern, s), {}).get(m, {}).get("w_alarm_s") for s in xs]
            v = [grid.get((tname, pattern, s), {}).get(m, {}).get("vtr_1") for s in xs]
            if all(x is None for x in w):
                continue
            style = "-" if m.startswith("vigil") else ("--" if m in {"dat", "optimal"} else ":")
            c = colours[i % len(colours)]
            axes[0][col].plot(xs, [x if x is not None else float("nan") for x in w], style, c=c, marker="o", label=m)
            axes[1][col].plot(
                xs, [100 * x if x is not None else float("nan") for x in v], style, c=c, marker="o", label=m
            )
        axes[0][col].set_yscale("log")
        axes[0][col].set_title(f"{tname} ({pattern})")
        axes[0][col].set_ylabel("W-Alarm (s)")
        axes[1][col].set_ylabel("VTR@1s (%)")
        axes[1][col].set_xlabel("bandwidth scale")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the grid, the optimum comparison and the cost benchmark; write the report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--traces", default=",".join(DEFAULT_TRACES), help="comma-separated, relative to shared traces")
    ap.add_argument("--patterns", default="low,medium,burst")
    ap.add_argument("--scales", default="1.0,0.5,0.25")
    ap.add_argument("--seeds", type=int, default=5, help="seeds per grid cell (metrics are averaged)")
    ap.add_argument("--horizon-s", type=float, default=300.0)
    ap.add_argument("--small-seeds", type=int, default=3, help="instances per trace and pattern vs the optimum")
    ap.add_argument("--cost-sizes", default="10,100,1000,10000")
    ap.add_argument(
        "--bandwidth-estimate",
        choices=["oracle", "previous"],
        default="oracle",
        help="B_tau given to the schedulers: the interval's own average (paper) or the previous interval's",
    )
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    paths = [TRACES_DIR / t.strip() for t in args.traces.split(",") if t.strip()]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        sys.stderr.write(f"traces not found: {missing}\n")
        return 2
    traces = {p.name: load_trace(p) for p in paths}
    patterns = [p.strip() for p in args.patterns.split(",") if p.strip()]
    scales = [float(s) for s in args.scales.split(",") if s.strip()]
    info = machine_info()
    meta: dict[str, Any] = {"machine": f"{info['machine']} {info['python']}"}
    emit(
        {
            "bench": "uplink",
            "traces": list(traces),
            "patterns": patterns,
            "scales": scales,
            "seeds": args.seeds,
            **machine_info(),
        }
    )
    for block, (pattern, scale, rows) in PAPER_TABLE3.items():
        for method, (w, v05, v1, vd) in rows.items():
            emit(
                {
                    "bench": "uplink_paper_table3",
                    "block": block,
                    "pattern": pattern,
                    "scale": scale,
                    "method": method,
                    "w_alarm_s": w,
                    "vtr_0_5": v05 / 100,
                    "vtr_1": v1 / 100,
                    "avg_visual_delay_s": vd,
                }
            )
    grid = run_grid(traces, patterns, scales, args.seeds, args.horizon_s, args.bandwidth_estimate)
    small = run_small(traces, args.small_seeds) if args.small_seeds > 0 else []
    first = next(iter(traces.values()))
    cost_sizes = [int(n) for n in args.cost_sizes.split(",") if n.strip()]
    costs = run_costs(cost_sizes, 0.25 * first.mean_Bps) if cost_sizes else []
    meta.update(
        horizon_s=args.horizon_s,
        seeds=args.seeds,
        estimate=args.bandwidth_estimate,
        runtime_s=time.perf_counter() - t0,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    report = markdown(grid, traces, patterns, scales, small, costs, meta)
    (args.out / "uplink.md").write_text(report + "\n")
    plot_pattern = "burst" if "burst" in patterns else patterns[0]
    plot(grid, list(traces), scales, plot_pattern, args.out / "uplink.png")
    sys.stderr.write(report + "\n")
    emit({"bench": "uplink_done", "runtime_s": round(meta["runtime_s"], 1), "report": str(args.out / "uplink.md")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
