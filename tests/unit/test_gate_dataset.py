"""The accident dataset builder: split by clip, background negatives, unboxed positives kept out, clear errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from services.gating.training.dataset import DatasetError, build_yolo_dataset, load_frames, split_clips
from tests.cctv import tiny_cctv


@pytest.fixture
def cctv(tmp_path: Path) -> Path:
    return tiny_cctv(tmp_path / "cctv")


def test_split_is_by_clip_and_seeded(cctv: Path, tmp_path: Path) -> None:
    built = build_yolo_dataset(cctv, tmp_path / "ds", seed=3)
    clips = {s: set(c.clips) for s, c in built.splits.items()}
    assert not clips["train"] & clips["val"] and not clips["train"] & clips["test"] and not clips["val"] & clips["test"]
    assert clips["train"] | clips["val"] | clips["test"] == {f.clip for f in load_frames(cctv)}
    # Every image of a clip lands in that clip's split.
    for split, names in clips.items():
        for img in (tmp_path / "ds" / "images" / split).iterdir():
            assert img.name.split("_", 1)[0] in names
    again = build_yolo_dataset(cctv, tmp_path / "ds2", seed=3)
    assert {s: c.clips for s, c in again.splits.items()} == {s: c.clips for s, c in built.splits.items()}
    assert split_clips(list("abcdefghij"), 0) != split_clips(list("abcdefghij"), 1)


def test_backgrounds_positives_and_unboxed(cctv: Path, tmp_path: Path) -> None:
    built = build_yolo_dataset(cctv, tmp_path / "ds", seed=0)
    frames = load_frames(cctv)
    labels = {f"{f.clip}_{f.image.stem}": f for f in frames}
    in_set = set()
    for split in ("train", "val", "test"):
        for label_file in (tmp_path / "ds" / "labels" / split).iterdir():
            f = labels[label_file.stem]
            in_set.add(label_file.stem)
            lines = label_file.read_text().splitlines()
            if f.label == "normal":
                assert lines == []  # a background image: DAT's external negatives
            else:
                assert len(lines) == len(f.boxes or ()) > 0
                assert all(line.startswith("0 ") for line in lines)
            image = tmp_path / "ds" / "images" / split / f"{label_file.stem}.jpg"
            assert image.is_symlink() and image.resolve() == f.image.resolve()  # the data stays where it is
    unboxed = {k for k, f in labels.items() if f.label == "accident" and f.boxes is None}
    assert unboxed and not unboxed & in_set
    with (tmp_path / "ds" / "frames.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(frames)  # unboxed accident frames stay for the frame-level evaluation
    data = json.loads(built.data_yaml.read_text())
    assert data["names"] == {"0": "accident"}


def test_two_class_design_adds_vehicle_pseudo_labels(cctv: Path, tmp_path: Path) -> None:
    built = build_yolo_dataset(
        cctv, tmp_path / "ds", design="accident+vehicle", vehicle_labeller=lambda _p: [(0.5, 0.5, 0.1, 0.1)]
    )
    assert built.class_names == ("accident", "vehicle")
    some = next((tmp_path / "ds" / "labels" / "train").iterdir())
    assert "1 0.500000 0.500000 0.100000 0.100000" in some.read_text()


def test_no_labels(cctv: Path, tmp_path: Path) -> None:
    for f in (cctv / "labels").rglob("*.txt"):
        f.unlink()
    with pytest.raises(DatasetError, match="no labels"):
        build_yolo_dataset(cctv, tmp_path / "ds")


def test_no_frames_csv(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no frames\.csv"):
        build_yolo_dataset(tmp_path / "empty", tmp_path / "ds")


def test_labels_that_do_not_match_images(cctv: Path, tmp_path: Path) -> None:
    label = next((cctv / "labels").rglob("*.txt"))
    label.write_text(label.read_text() + "0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match="do not match"):
        build_yolo_dataset(cctv, tmp_path / "ds")


def test_orphan_label_file(cctv: Path, tmp_path: Path) -> None:
    clip_dir = next((cctv / "labels").iterdir())
    (clip_dir / "no_such_frame.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match="match no image"):
        build_yolo_dataset(cctv, tmp_path / "ds")


def test_one_class_missing(cctv: Path, tmp_path: Path) -> None:
    rows = list(csv.DictReader((cctv / "frames.csv").open()))
    fields = list(rows[0])
    with (cctv / "frames.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(r for r in rows if r["label"] == "accident")
    with pytest.raises(DatasetError, match="no normal frames"):
        build_yolo_dataset(cctv, tmp_path / "ds")


def test_too_few_clips(tmp_path: Path) -> None:
    cctv = tiny_cctv(tmp_path / "cctv", clips=("test13", "test14"))
    with pytest.raises(DatasetError, match="at least 3"):
        build_yolo_dataset(cctv, tmp_path / "ds")


def test_fold_val_trains_on_the_val_clips_too(cctv: Path, tmp_path: Path) -> None:
    built = build_yolo_dataset(cctv, tmp_path / "ds", seed=0, fold_val=True)
    train = {p.name for p in (tmp_path / "ds" / "images" / "train").iterdir()}
    val = {p.name for p in (tmp_path / "ds" / "images" / "val").iterdir()}
    test = {p.name for p in (tmp_path / "ds" / "images" / "test").iterdir()}
    assert val and val <= train and not test & train
    assert built.fold_val and json.loads((tmp_path / "ds" / "split.json").read_text())["fold_val"] is True
