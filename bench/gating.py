"""make bench-gating: detector throughput per backend and size, motion pre-gate skip rate, MLLM load.

Prints JSON lines. Videos: ../shared/data/videos/static_camera/ (read in place).
Reference, side by side in the same run: ultralytics at 640 (the paper-style
PyTorch deployment) is the baseline every backend's speed is divided by; the
motion pre-gate is compared with running the detector on every frame.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.harness import SHARED_DATA, emit, machine_info, percentiles, ratio
from scripts.export_detector_onnx import export_onnx
from services.gating.bootstrap import build_gater
from services.gating.config import GatingConfig
from services.gating.motion import MotionGate
from services.ingest.source import VideoSource
from services.models.detectors.base import (
    Detector,
    OnnxDetectorConfig,
    UltralyticsDetectorConfig,
    build_detector,
)

VIDEOS = SHARED_DATA / "videos" / "static_camera"


def load_frames(video: Path, fps: float | None, limit: int | None = None) -> list[np.ndarray]:
    """Decoded frames of `video` sampled at `fps`."""
    src = VideoSource(str(video), fps=fps)
    frames = []
    for f in src.frames():
        frames.append(f.image)
        if limit and len(frames) >= limit:
            break
    src.close()
    return frames


def time_detector(det: Detector, frames: list[np.ndarray], warmup: int = 3) -> dict[str, float]:
    """Mean seconds per frame after `warmup` frames, and frames per second."""
    for f in frames[:warmup]:
        det.detect(f)
    times = []
    for f in frames:
        t = time.perf_counter()
        det.detect(f)
        times.append(time.perf_counter() - t)
    arr = np.array(times)
    return {
        "fps": round(1 / arr.mean(), 2),
        "mean_ms": round(arr.mean() * 1e3, 1),
        "p95_ms": round(percentiles(arr, [95])[0] * 1e3, 1),
        "frames": len(frames),
    }


def main() -> int:
    """Run the three measurements and print JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30, help="frames per video for detector timing")
    ap.add_argument("--fps", type=float, default=5.0, help="sampling rate for pre-gate and MLLM load")
    args = ap.parse_args()
    videos = sorted(p for p in VIDEOS.glob("*") if p.suffix in {".mp4", ".avi"})
    if not videos:
        sys.stderr.write(f"no videos under {VIDEOS}\n")
        return 2
    emit(
        {
            "bench": "gating",
            **machine_info(),
            "videos": [v.name for v in videos],
        }
    )

    # 1. Detector throughput, every backend at 640 and 320 on the same frames.
    timing_frames = [f for v in videos for f in load_frames(v, None, args.frames)]
    configs: list[tuple[str, int, object]] = [
        ("ultralytics", 640, UltralyticsDetectorConfig(imgsz=640)),
        ("ultralytics", 320, UltralyticsDetectorConfig(imgsz=320)),
        ("onnx", 640, OnnxDetectorConfig()),
        ("onnx", 320, OnnxDetectorConfig(weights=export_onnx(320))),
        # The traffic profile's pair: our accident detector (the gate) and COCO YOLOv8n (context, gated frames).
        ("onnx", 416, OnnxDetectorConfig(model="accident")),
        ("onnx", 640, OnnxDetectorConfig(model="coco")),
    ]
    baseline: float | None = None
    for backend, size, cfg in configs:
        det = build_detector(cfg)  # type: ignore[arg-type]
        r = time_detector(det, timing_frames)
        baseline = baseline or r["fps"]
        emit(
            {
                "bench": "detector",
                "backend": backend,
                "imgsz": size,
                "model": det.name,
                **r,
                "reference": "ultralytics@640",
                "speedup_vs_reference": ratio(r["fps"], baseline, 2),
            }
        )

    # 2. Motion pre-gate skip rate, and 3. MLLM load, per video at the sampling rate.
    for video in videos:
        frames = load_frames(video, args.fps)
        gate = MotionGate()
        skipped = sum(not gate.check(f, i / args.fps).changed for i, f in enumerate(frames))
        gater = build_gater(GatingConfig())
        gated = calls = 0
        t = time.perf_counter()
        for i, f in enumerate(frames):
            o = gater.process("bench", i, i / args.fps, 0, f)
            gated += o.gate.gated
            calls += o.event is not None or o.invalid_model_output is not None
        wall = time.perf_counter() - t
        gater_all = build_gater(GatingConfig(motion_gate=False))
        t = time.perf_counter()
        gated_all = sum(gater_all.process("bench", i, i / args.fps, 0, f).gate.gated for i, f in enumerate(frames))
        wall_all = time.perf_counter() - t
        n = len(frames)
        emit(
            {
                "bench": "pipeline",
                "video": video.name,
                "frames": n,
                "sample_fps": args.fps,
                "motion_skip_rate": round(skipped / n, 4),
                "gated_share": round(gated / n, 4),
                "gated_share_without_pregate": round(gated_all / n, 4),
                "mllm_calls": calls,
                "mllm_load": round(calls / n, 4),
                "pipeline_fps_with_pregate": round(n / wall, 2),
                "pipeline_fps_without_pregate": round(n / wall_all, 2),
                "pregate_speedup": round(wall_all / wall, 2),
            }
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
