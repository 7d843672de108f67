"""How the CLI shows things: alerts, the run summary, answers, validation errors (JSON or lines for a person)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from google.protobuf.json_format import MessageToDict

from services.common.memory_api import Mode
from services.models.answerers.base import format_time
from vigil.alert.v1 import alert_pb2
from vigil.reasoning.v1 import reasoning_pb2


def alert_record(alert: alert_pb2.Alert, delivered_ms: float | None = None) -> dict[str, Any]:
    """An alert as one JSON object; `event` is the schema-valid structured event."""
    rec: dict[str, Any] = {
        "type": "alert",
        "event_id": alert.event_id,
        "camera_id": alert.camera_id,
        "frame_seq": alert.frame_seq,
        "pts_s": round(alert.pts_s, 3),
        "level": alert.level,
        "score": round(alert.score, 4),
        "event": json.loads(alert.event_json),
        "producer": MessageToDict(alert.producer, preserving_proto_field_name=True),
        "roi_bytes": alert.roi_bytes,
        "box_bytes": alert.box_bytes,
    }
    if delivered_ms is not None:
        rec["frame_to_alert_ms"] = round(delivered_ms, 1)
    return rec


def format_alert(alert: alert_pb2.Alert) -> str:
    """One human-readable line per alert."""
    ev = json.loads(alert.event_json)
    who = alert.producer.kind + (f" + adapter {alert.producer.adapter}" if alert.producer.adapter else "")
    who += " (random-init stand-in)" if alert.producer.random_init else ""
    return (
        f"ALERT {alert.camera_id} t={alert.pts_s:7.2f}s level={alert.level} score={alert.score:.2f} "
        f"{ev['event_type']} x{ev['count']} [{ev['severity']}] {ev['summary']!r} by {who} id={alert.event_id}"
    )


def print_summary(summary: dict[str, Any], out: TextIO, as_json: bool) -> None:
    """The run summary: one JSON line, or a table for a person."""
    if as_json:
        print(json.dumps(summary), file=out, flush=True)
        return
    n = summary["frames"]
    lines = [
        "",
        f"source            {summary['source']} (profile {summary.get('profile', '?')})",
        f"frames            {n} published of {summary['frames_read']} read"
        + (f", {summary['corrupt_frames']} corrupt skipped" if summary["corrupt_frames"] else "")
        + (" (file ended early: truncated?)" if summary["ended_early"] else ""),
        f"gated in          {summary['frames_gated']} ({100 * summary['gated_share']:.1f}% of frames, tau_g gate)",
        f"detector runs     {summary['detector_runs']} (motion pre-gate skipped "
        f"{100 * summary['motion_skip_rate']:.1f}%)",
        f"MLLM load         {summary['mllm_calls']} calls ({100 * summary['mllm_load']:.1f}% of frames) "
        f"via {summary['structurer']}; {summary.get('confident_events', 0)} confident events (s_t >= tau_high) "
        "written from the detectors' priors",
        f"events / alerts   {summary['events']} / {summary['alerts']}"
        + (
            f", {summary['invalid_model_outputs']} invalid model outputs rejected"
            if summary["invalid_model_outputs"]
            else ""
        ),
        f"throughput        {summary['fps']} frames/s over {summary['wall_s']} s, detector {summary['detector']}",
        "latency (ms)      stage                  n      p50      p95",
    ]
    for stage, s in summary["latency_ms"].items():
        lines.append(f"                  {stage:<20} {s['n']:>5} {s['p50_ms']:>8.1f} {s['p95_ms']:>8.1f}")
    if summary.get("memory_points") is not None:
        lines.append(
            f"memory            {summary['index_entries']} clusters indexed this run, {summary['memory_points']} "
            f'in {summary["memory_path"]}: ask with `vigil ask "..."`'
        )
        if summary.get("memory_refused"):
            lines.append(
                f"                  {summary['memory_refused']} frames and clusters NOT stored: the memory's disk "
                "was under memory.min_free_bytes (alerts were not affected)"
            )
    if summary.get("memory_error"):
        lines.append(f"memory            NOT kept: {summary['memory_error']} (alerts were not affected)")
    cameras = summary.get("cameras") or []
    if len(cameras) > 1 or any(c["failed"] for c in cameras):
        lines.append("cameras           id                 frames  gated  detector  dropped  alerts")
        for c in cameras:
            state = f"  FAILED: {c['error']}" if c["failed"] else (" (ended early)" if c["ended_early"] else "")
            lines.append(
                f"                  {c['camera_id']:<18} {c['frames']:>6} {c['frames_gated']:>6} "
                f"{c['detector_runs']:>9} {c['dropped']:>8} {c['alerts']:>7}{state}"
            )
    if not summary["alerts"]:
        lines.insert(1, "no alerts: nothing in this video crossed the gate (see README for what the model sees)")
    print("\n".join(lines), file=out, flush=True)


def validation_message(exc: Any) -> str:
    """A pydantic ValidationError as one line per field: `gating.tau_g: Input should be ...`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in exc.errors()
    )


def print_answer(response: reasoning_pb2.AskResponse, saved: list[Path]) -> None:
    """An answer, its keyframes and notes, for a person."""
    r = response.retrieval
    print(response.answer)
    print()
    who = response.vlm + (" (random-init stand-in: the text is meaningless)" if response.random_init else "")
    print(f"answered by       {who}")
    mode = Mode.from_proto(r.mode).label
    print(
        f"keyframes         {len(response.keyframes)} from {r.clusters_chosen} of {r.index_frames_in_range} index "
        f"frames ({mode}, {r.draws} draws, covered p={r.covered_probability:.2f}, N_min={r.n_min}, N_max={r.n_max}, "
        f"T={r.temperature:g}, theta={r.theta:g}, seed={r.seed}) in {r.retrieve_ms:.0f} ms"
    )
    for k in response.keyframes:
        src = " (index frame)" if k.from_index_frame else ""
        when = format_time(k.time_s)
        print(f"  {k.camera_id} {when:>10}  sim={k.similarity:.3f} p={k.probability:.3f}{src}  {k.aux_text}")
    for note in response.notes:
        print(f"note: {note}")
    if saved:
        print(f"saved {len(saved)} keyframes to {saved[0].parent}")
