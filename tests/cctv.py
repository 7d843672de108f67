"""A tiny copy of shared/data/images/cctv_accidents for tests: a few real frames of a few clips, same layout."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

CCTV = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "cctv_accidents"
# Clips with box-labelled accident frames and normal frames, so any split by clip has both classes.
CLIPS = ("test13", "test14", "test16", "test26", "test4")


def tiny_cctv(dest: Path, clips: tuple[str, ...] = CLIPS, per_kind: int = 2) -> Path:
    """Copy `per_kind` boxed-accident, normal and unboxed-accident frames of each clip into `dest`."""
    if not (CCTV / "frames.csv").is_file():
        pytest.skip(f"shared data not found at {CCTV}")
    with (CCTV / "frames.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    keep = []
    for clip in clips:
        mine = [r for r in rows if r["clip"] == clip]
        boxed = [r for r in mine if r["label"] == "accident" and r["boxes"]][:per_kind]
        normal = [r for r in mine if r["label"] == "normal"][:per_kind]
        unboxed = [r for r in mine if r["label"] == "accident" and not r["boxes"]][:1]
        keep += sorted(boxed + normal + unboxed, key=lambda r: int(r["frame"]))
    for r in keep:
        src = CCTV / r["file"]
        (dest / src.relative_to(CCTV)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / src.relative_to(CCTV))
        if r["boxes"]:
            label = CCTV / "labels" / r["clip"] / f"{src.stem}.txt"
            (dest / "labels" / r["clip"]).mkdir(parents=True, exist_ok=True)
            shutil.copy2(label, dest / "labels" / r["clip"] / label.name)
    with (dest / "frames.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(keep)
    return dest
