"""The accident-detector dataset: labelled CCTV clips -> a YOLO dataset split by clip (DAT section 4.1.1).

Input is the layout of `shared/data/images/cctv_accidents/`:

    frames.csv                    file,clip,frame,label,boxes,...  (label: accident | normal;
                                  boxes: number of accident boxes, empty = the frame was never box-labelled)
    frames/<clip>/<name>.jpg
    labels/<clip>/<name>.txt      YOLO `0 cx cy w h`, class 0 = the accident region

What goes where:

- `accident` frames with boxes are the detector's positives (class 0, `accident`).
- `normal` frames are background images with an empty label file: DAT's external negatives.
- `accident` frames without boxes are left out of the detector set (their boxes are unknown; as background
  they would teach the model that a crash is not one), but every frame keeps its frame label in
  `frames.csv` for the frame-level evaluation.
- The two-class design adds class 1 `vehicle`, pseudo-labelled by a COCO detector on every image it keeps.

The split is by clip, never by frame (frames of one clip are near-identical), with a fixed seed. Images are
symlinked, never copied: the data stays where it is.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
Design = Literal["accident", "accident+vehicle"]
DESIGNS: dict[str, tuple[str, ...]] = {"accident": ("accident",), "accident+vehicle": ("accident", "vehicle")}
# COCO classes that become `vehicle` in the two-class design.
VEHICLE_CLASSES = frozenset({"car", "truck", "bus", "motorcycle", "bicycle"})

# Pseudo-labeller: image path -> YOLO-normalised (cx, cy, w, h) vehicle boxes.
VehicleLabeller = Callable[[Path], list[tuple[float, float, float, float]]]


class DatasetError(ValueError):
    """The input folder cannot be turned into a training set; the message says what is wrong."""


@dataclass(frozen=True)
class LabelledFrame:
    """One row of frames.csv with its accident boxes (None = not box-labelled)."""

    image: Path
    clip: str
    frame: int
    label: str
    boxes: tuple[tuple[float, float, float, float], ...] | None

    @property
    def in_detector_set(self) -> bool:
        """Positives with known boxes and every normal frame; unboxed accident frames are left out."""
        return self.label == "normal" or self.boxes is not None

    @property
    def stem(self) -> str:
        """A file name unique across clips."""
        return f"{self.clip}_{self.image.stem}"


@dataclass
class SplitCounts:
    """What one split holds."""

    clips: list[str] = field(default_factory=list)
    frames: int = 0
    accident_frames: int = 0
    accident_boxed: int = 0
    normal_frames: int = 0
    accident_boxes: int = 0
    vehicle_boxes: int = 0


@dataclass(frozen=True)
class BuiltDataset:
    """Where the YOLO dataset is and what it contains."""

    root: Path
    data_yaml: Path
    design: str
    class_names: tuple[str, ...]
    seed: int
    splits: dict[str, SplitCounts]
    # The validation clips were trained on as well (the final model).
    fold_val: bool = False

    def as_dict(self) -> dict[str, object]:
        """JSON-ready description (written as split.json)."""
        return {
            "root": str(self.root),
            "data_yaml": str(self.data_yaml),
            "design": self.design,
            "class_names": list(self.class_names),
            "seed": self.seed,
            "fold_val": self.fold_val,
            "splits": {k: asdict(v) for k, v in self.splits.items()},
        }


def _parse_label_file(path: Path) -> tuple[tuple[float, float, float, float], ...]:
    boxes = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 5:
            raise DatasetError(f"{path}:{n}: expected `class cx cy w h`, got {line!r}")
        try:
            cls, cx, cy, w, h = int(parts[0]), *map(float, parts[1:])
        except ValueError:
            raise DatasetError(f"{path}:{n}: not numbers: {line!r}") from None
        if cls != 0:
            raise DatasetError(f"{path}:{n}: class {cls}; this layout has one class, 0 = accident")
        if not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)) or w <= 0 or h <= 0:
            raise DatasetError(f"{path}:{n}: box {cx, cy, w, h} is not normalised to (0, 1]")
        boxes.append((cx, cy, w, h))
    return tuple(boxes)


def load_frames(root: Path) -> list[LabelledFrame]:
    """Read and cross-check frames.csv, the images and the label files; errors name the file and the fix."""
    csv_path = root / "frames.csv"
    labels_dir = root / "labels"
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    if not csv_path.is_file():
        raise DatasetError(
            f"{root} has no frames.csv: expected the cctv_accidents layout (frames.csv with "
            "file,clip,frame,label,boxes; frames/<clip>/*.jpg; labels/<clip>/*.txt)"
        )
    if not labels_dir.is_dir() or not any(labels_dir.rglob("*.txt")):
        raise DatasetError(f"{root} has no labels: labels/<clip>/<frame>.txt (YOLO `0 cx cy w h`) are needed")
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        need = {"file", "clip", "frame", "label", "boxes"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise DatasetError(f"{csv_path}: needs columns {sorted(need)}, has {reader.fieldnames}")
        rows = list(reader)
    frames: list[LabelledFrame] = []
    used_labels: set[Path] = set()
    for n, row in enumerate(rows, 2):
        image = root / row["file"]
        if not image.is_file():
            raise DatasetError(f"{csv_path}:{n}: image {row['file']} does not exist")
        if row["label"] not in {"accident", "normal"}:
            raise DatasetError(f"{csv_path}:{n}: label {row['label']!r} is neither 'accident' nor 'normal'")
        label_file = labels_dir / row["clip"] / f"{image.stem}.txt"
        boxes: tuple[tuple[float, float, float, float], ...] | None = None
        if row["boxes"].strip():
            if not label_file.is_file():
                raise DatasetError(f"{csv_path}:{n}: says {row['boxes']} boxes but {label_file} does not exist")
            boxes = _parse_label_file(label_file)
            used_labels.add(label_file)
            if len(boxes) != int(row["boxes"]):
                raise DatasetError(
                    f"{label_file} has {len(boxes)} boxes, frames.csv line {n} says {row['boxes']}: "
                    "the labels do not match the images"
                )
            if row["label"] == "normal" and boxes:
                raise DatasetError(f"{label_file}: accident boxes on a frame labelled normal")
        elif label_file.is_file():
            raise DatasetError(f"{label_file} exists but frames.csv line {n} says the frame is not box-labelled")
        frames.append(LabelledFrame(image, row["clip"], int(row["frame"]), row["label"], boxes))
    orphans = sorted(set(labels_dir.rglob("*.txt")) - used_labels)
    if orphans:
        raise DatasetError(
            f"{len(orphans)} label files match no image in frames.csv (first: {orphans[0]}): "
            "the labels do not match the images"
        )
    return frames


def split_clips(
    clips: Sequence[str], seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
) -> dict[str, list[str]]:
    """Shuffle the clip ids with `seed` and cut them into train/val/test by clip count (val and test >= 1 clip)."""
    ids = sorted(set(clips))
    if len(ids) < 3:
        raise DatasetError(f"{len(ids)} clips: a split by clip needs at least 3 (train, val, test)")
    random.Random(seed).shuffle(ids)
    n_test = max(1, math.floor(fractions[2] * len(ids) + 0.5))
    n_val = max(1, math.floor(fractions[1] * len(ids) + 0.5))
    return {"test": ids[:n_test], "val": ids[n_test : n_test + n_val], "train": ids[n_test + n_val :]}


def _check_classes(counts: dict[str, SplitCounts]) -> None:
    for split in ("train", "val"):
        c = counts[split]
        if not c.accident_boxes:
            raise DatasetError(
                f"the {split} split (clips {', '.join(c.clips)}) has no accident boxes: class 'accident' is missing; "
                "label more frames or use another --seed"
            )
        if not c.normal_frames:
            raise DatasetError(
                f"the {split} split (clips {', '.join(c.clips)}) has no normal frames: no negatives to learn from"
            )
    if not counts["test"].accident_frames or not counts["test"].normal_frames:
        raise DatasetError(f"the test split (clips {', '.join(counts['test'].clips)}) needs accident and normal frames")


def build_yolo_dataset(
    source: Path,
    out: Path,
    *,
    seed: int = 0,
    design: Design = "accident",
    vehicle_labeller: VehicleLabeller | None = None,
    fold_val: bool = False,
) -> BuiltDataset:
    """Write `out/{images,labels}/{train,val,test}`, `data.yaml`, `split.json` and `frames.csv` (every frame).

    `fold_val` also trains on the validation clips (they stay in `val` too, which then no longer
    measures anything held out): for the final model, once the epochs were chosen on them.
    """
    if design not in DESIGNS:
        raise DatasetError(f"unknown design {design!r}; known: {', '.join(DESIGNS)}")
    if design == "accident+vehicle" and vehicle_labeller is None:
        raise DatasetError("the accident+vehicle design needs a vehicle labeller (the COCO detector)")
    frames = load_frames(source)
    if not frames:
        raise DatasetError(f"{source}/frames.csv lists no frames")
    assignment = split_clips([f.clip for f in frames], seed)
    split_of = {clip: split for split, clips in assignment.items() for clip in clips}
    counts = {s: SplitCounts(clips=sorted(assignment[s])) for s in SPLITS}
    for f in frames:
        c = counts[split_of[f.clip]]
        c.frames += 1
        if f.label == "accident":
            c.accident_frames += 1
            if f.boxes is not None:
                c.accident_boxed += 1
                c.accident_boxes += len(f.boxes)
        else:
            c.normal_frames += 1
    _check_classes(counts)

    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        for kind in ("images", "labels"):
            d = out / kind / split
            d.mkdir(parents=True, exist_ok=True)
            for old in d.iterdir():
                old.unlink()
    rows = []
    for f in frames:
        split = split_of[f.clip]
        rows.append(
            {
                "image": str(f.image.resolve()),
                "clip": f.clip,
                "frame": f.frame,
                "label": f.label,
                "boxes": "" if f.boxes is None else len(f.boxes),
                "split": split,
                "in_detector_set": int(f.in_detector_set),
            }
        )
        if not f.in_detector_set:
            continue
        lines = [f"0 {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}" for cx, cy, w, h in f.boxes or ()]
        if vehicle_labeller is not None:
            vehicles = vehicle_labeller(f.image)
            counts[split].vehicle_boxes += len(vehicles)
            lines += [f"1 {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}" for cx, cy, w, h in vehicles]
        for target in (split, "train") if fold_val and split == "val" else (split,):
            os.symlink(f.image.resolve(), out / "images" / target / f"{f.stem}{f.image.suffix}")
            (out / "labels" / target / f"{f.stem}.txt").write_text("".join(line + "\n" for line in lines))
    names = DESIGNS[design]
    data_yaml = out / "data.yaml"
    # JSON is valid YAML: no YAML writer needed, and ultralytics reads it as its data file.
    data_yaml.write_text(
        json.dumps(
            {
                "path": str(out.resolve()),
                "train": "images/train",
                "val": "images/val",
                "test": "images/test",
                "names": dict(enumerate(names)),
            },
            indent=2,
        )
        + "\n"
    )
    with (out / "frames.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    built = BuiltDataset(out, data_yaml, design, names, seed, counts, fold_val)
    (out / "split.json").write_text(json.dumps(built.as_dict(), indent=2) + "\n")
    log.info(
        "dataset %s (%s): %s",
        out,
        design,
        {s: Counter({"frames": c.frames, "boxes": c.accident_boxes}) for s, c in counts.items()},
    )
    return built


def read_eval_frames(dataset: Path, split: str) -> list[dict[str, str]]:
    """Every frame of a split (frame-level labels included), in clip and frame order, from a built dataset."""
    with (dataset / "frames.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    return sorted(rows, key=lambda r: (r["clip"], int(r["frame"])))
