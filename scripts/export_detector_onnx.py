"""Export the YOLO fall detector (.pt) to ONNX at a given input size, for the onnxruntime backend.

The shipped best_fp16.onnx is static 640x640; other sizes need their own export.
Usage: python scripts/export_detector_onnx.py --imgsz 320 [--weights best.pt] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from services.models.detectors.base import shipped_weights_dir

ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("export_detector_onnx")


def export_onnx(imgsz: int, weights: Path | None = None, out_dir: Path | None = None) -> Path:
    """Export `weights` at `imgsz` (fp32, static shape, no NMS); reuse an existing export."""
    from ultralytics import YOLO

    weights = weights or shipped_weights_dir() / "best.pt"
    out_dir = out_dir or ROOT / ".cache" / "detectors"
    out = out_dir / f"{weights.stem}_{imgsz}.onnx"
    if out.is_file():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # Ultralytics writes next to the weights; keep the installed package untouched.
        local = Path(tmp) / weights.name
        shutil.copy(weights, local)
        # Ultralytics prints its progress on stdout; keep stdout for callers' JSON lines.
        with contextlib.redirect_stdout(sys.stderr):
            produced = YOLO(str(local)).export(format="onnx", imgsz=imgsz, simplify=False, dynamic=False)
        shutil.move(str(produced), out)
    log.info("exported %s", out)
    return out


def main() -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--imgsz", type=int, required=True)
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level="INFO")
    sys.stdout.write(f"{export_onnx(args.imgsz, args.weights, args.out)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
