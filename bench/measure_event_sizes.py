"""Measure real event byte costs (c_json, c_roi, c_box) by running the gating pipeline over the shared videos.

Writes services/uplink/sim/event_sizes.json: derived numbers only (sizes, level,
score per event), never frames. The uplink workload patterns sample from it.

Runs the real pipeline: ``build_gater(GatingConfig(target_classes="*"))`` (the
shipped ONNX fall detector and the detector-prior structurer) over every video
under ../shared/data/videos/{static_camera,scene_cuts}, sampled at 5 fps.
``target_classes="*"`` makes every detected person an incident, not only
falls, which gives many more samples; those events get level 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from bench.harness import SHARED_DATA, emit
from services.gating.bootstrap import build_gater
from services.gating.config import GatingConfig
from services.ingest.source import VideoSource
from services.uplink.sim.workload import SIZES_PATH

VIDEO_DIRS = [SHARED_DATA / "videos" / d for d in ("static_camera", "scene_cuts")]
# The file the uplink workloads sample from.
OUTPUT = SIZES_PATH


def measure(video: Path, fps: float) -> list[dict[str, object]]:
    """One sample per event the gating pipeline writes for `video`."""
    gater = build_gater(GatingConfig(target_classes="*"))
    src = VideoSource(str(video), fps=fps)
    samples: list[dict[str, object]] = []
    try:
        for frame in src.frames():
            outcome = gater.process(video.stem, frame.index, frame.pts_s, 0, frame.image)
            ev = outcome.event
            if ev is None:
                continue
            samples.append(
                {
                    "video": video.name,
                    "pts_s": round(frame.pts_s, 3),
                    "level": ev.structured.level,
                    "score": ev.structured.score,
                    "c_json": len(ev.structured.to_json_bytes()),
                    "c_roi": len(ev.evidence.roi_jpeg),
                    "c_box": len(ev.evidence.box_jpeg),
                }
            )
    finally:
        src.close()
    return samples


def summary(samples: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    """min / median / max of each byte cost."""
    out: dict[str, dict[str, float]] = {}
    for key in ("c_json", "c_roi", "c_box"):
        arr = np.array([float(s[key]) for s in samples])  # type: ignore[arg-type]
        out[key] = {"min": float(arr.min()), "median": float(np.median(arr)), "max": float(arr.max())}
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline over the shared videos and write the samples file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--output", type=Path, default=OUTPUT)
    args = ap.parse_args(argv)
    videos = sorted(p for d in VIDEO_DIRS for p in d.glob("*") if p.suffix in {".mp4", ".avi"})
    if not videos:
        sys.stderr.write(f"no videos under {', '.join(map(str, VIDEO_DIRS))}\n")
        return 2
    samples: list[dict[str, object]] = []
    for v in videos:
        got = measure(v, args.fps)
        sys.stderr.write(f"{v.name}: {len(got)} events\n")
        samples.extend(got)
    if not samples:
        sys.stderr.write("the pipeline wrote no events\n")
        return 1
    doc = {
        "source": "python -m bench.measure_event_sizes: real gating pipeline (ONNX fall detector, detector-prior "
        f"structurer, target_classes='*') over ../shared/data/videos at {args.fps} fps",
        "units": "bytes",
        "videos": [v.name for v in videos],
        "summary": summary(samples),
        "samples": samples,
    }
    args.output.write_text(json.dumps(doc, indent=1) + "\n")
    emit({"events": len(samples), "summary": doc["summary"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
