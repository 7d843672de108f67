"""Detector-level metrics of a gate design (DAT Fig. 4), on clips the detector never trained on.

Definitions (a frame's trigger score s_t is the highest `accident` confidence in it, eq. 1):

- **mAP50**: average precision of the `accident` boxes at IoU >= 0.5, COCO-style (101-point
  interpolated precision envelope, greedy matching by confidence), over the frames with known boxes:
  the box-labelled accident frames and the normal frames (where every box is a false positive).
  Accident frames without boxes are left out: their boxes are unknown.
- **Balanced Accuracy**: (TPR + TNR) / 2 over *every* frame of the split, with a frame predicted
  `accident` when s_t >= tau_low (the gate g_t of eq. 1), against the frame label.
- **Suspect Precision**: of the frames the gate marks suspect (s_t >= tau_low), the share that are
  accident frames.
- **False Positives**: normal frames marked suspect (a count, and per normal frame).
- **MLLM Load**: the share of frames routed to the MLLM: tau_low <= s_t < tau_high. Frames at or above
  tau_high are confident: their event is written from the detector's priors and alerted at once,
  without waiting for the MLLM (our reading of DAT section 4.2.1's routing threshold; see README).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.models.detections import Box

log = logging.getLogger(__name__)

TAU_LOW = 0.25
TAU_HIGH = 0.8


@dataclass(frozen=True)
class FrameResult:
    """One evaluated frame: its label, known boxes (None = unknown) and the detector's accident boxes."""

    clip: str
    frame: int
    label: str
    truth: tuple[Box, ...] | None
    detections: tuple[tuple[Box, float], ...]

    @property
    def trigger_score(self) -> float:
        """s_t: the highest accident confidence in the frame (0 when there is none)."""
        return max((c for _, c in self.detections), default=0.0)


@dataclass(frozen=True)
class GateMetrics:
    """Fig. 4's metrics for one design on one split."""

    frames: int
    accident_frames: int
    normal_frames: int
    map50: float
    balanced_accuracy: float
    tpr: float
    tnr: float
    suspect_precision: float
    false_positives: int
    false_positive_rate: float
    mllm_load: float
    confident_share: float
    tau_low: float
    tau_high: float


def average_precision(frames: Sequence[FrameResult], iou: float = 0.5) -> float:
    """COCO-style AP at one IoU over frames with known boxes (101-point interpolation)."""
    known = [f for f in frames if f.truth is not None]
    n_truth = sum(len(f.truth or ()) for f in known)
    if n_truth == 0:
        return float("nan")
    scored: list[tuple[float, bool]] = []
    for f in known:
        truth = list(f.truth or ())
        used = [False] * len(truth)
        for box, conf in sorted(f.detections, key=lambda d: -d[1]):
            best, best_iou = -1, iou
            for j, t in enumerate(truth):
                o = box.iou(t)
                if not used[j] and o >= best_iou:
                    best, best_iou = j, o
            if best >= 0:
                used[best] = True
            scored.append((conf, best >= 0))
    if not scored:
        return 0.0
    scored.sort(key=lambda s: -s[0])
    hits = np.array([h for _, h in scored], dtype=np.float64)
    tp = np.cumsum(hits)
    fp = np.cumsum(1.0 - hits)
    recall = tp / n_truth
    precision = tp / np.maximum(tp + fp, 1e-12)
    # Precision envelope (monotone from the right), sampled at 101 recall points as COCO does.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0.0, 1.0, 101)
    idx = np.searchsorted(recall, points, side="left")
    sampled = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0.0)
    return float(sampled.mean())


def gate_metrics(frames: Sequence[FrameResult], tau_low: float = TAU_LOW, tau_high: float = TAU_HIGH) -> GateMetrics:
    """Fig. 4's metrics over the frames of a split (definitions in the module docstring)."""
    if not 0.0 < tau_low <= tau_high <= 1.0:
        raise ValueError(f"need 0 < tau_low <= tau_high <= 1, got {tau_low}, {tau_high}")
    s = np.array([f.trigger_score for f in frames])
    positive = np.array([f.label == "accident" for f in frames])
    suspect = s >= tau_low
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    tp = int((suspect & positive).sum())
    fp = int((suspect & ~positive).sum())
    tpr = tp / n_pos if n_pos else float("nan")
    tnr = (n_neg - fp) / n_neg if n_neg else float("nan")
    n = max(len(frames), 1)
    return GateMetrics(
        frames=len(frames),
        accident_frames=n_pos,
        normal_frames=n_neg,
        map50=average_precision(frames),
        balanced_accuracy=(tpr + tnr) / 2,
        tpr=tpr,
        tnr=tnr,
        suspect_precision=tp / (tp + fp) if tp + fp else float("nan"),
        false_positives=fp,
        false_positive_rate=fp / n_neg if n_neg else float("nan"),
        mllm_load=float(((s >= tau_low) & (s < tau_high)).sum()) / n,
        confident_share=float((s >= tau_high).sum()) / n,
        tau_low=tau_low,
        tau_high=tau_high,
    )


def metrics_dict(m: GateMetrics) -> dict[str, Any]:
    """JSON-ready metrics: an undefined ratio (nothing to divide by) is None, not NaN (which JSON lacks)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(m).items()}


def _truth_boxes(label_file: Path, width: int, height: int) -> tuple[Box, ...]:
    boxes = []
    for line in label_file.read_text().splitlines():
        parts = line.split()
        if len(parts) != 5 or parts[0] != "0":
            continue  # class 1 (vehicle pseudo-labels) is not scored
        cx, cy, w, h = map(float, parts[1:])
        boxes.append(Box((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height))
    return tuple(boxes)


def detect_split(detector: Any, dataset: Path, split: str, target: str = "accident") -> list[FrameResult]:
    """Run `detector` on every frame of `split` of a built dataset; keep its `target` boxes."""
    import cv2

    from services.gating.training.dataset import read_eval_frames

    results = []
    for row in read_eval_frames(dataset, split):
        image = cv2.imread(row["image"])
        if image is None:
            raise RuntimeError(f"cannot decode {row['image']}")
        h, w = image.shape[:2]
        truth: tuple[Box, ...] | None = None
        if row["label"] == "normal":
            truth = ()
        elif row["boxes"]:
            stem = f"{row['clip']}_{Path(row['image']).stem}"
            truth = _truth_boxes(dataset / "labels" / split / f"{stem}.txt", w, h)
        dets = tuple((d.box, d.confidence) for d in detector.detect(image) if d.label == target)
        results.append(FrameResult(row["clip"], int(row["frame"]), row["label"], truth, dets))
    return results


def evaluate_onnx_on_splits(
    onnx: Path, dataset: Path, splits: Sequence[str], tau_low: float = TAU_LOW, tau_high: float = TAU_HIGH
) -> dict[str, Any]:
    """Fig. 4's metrics of an exported detector on each split, through the production onnx backend."""
    from services.models.detectors.base import OnnxDetectorConfig
    from services.models.detectors.onnx_backend import OnnxDetector

    # A low floor: AP needs the whole precision-recall curve, the gate applies tau_low itself.
    detector = OnnxDetector(OnnxDetectorConfig(weights=onnx, min_confidence=0.001))
    out: dict[str, Any] = {}
    for split in splits:
        frames = detect_split(detector, dataset, split)
        out[split] = metrics_dict(gate_metrics(frames, tau_low, tau_high))
        log.info("%s on %s: %s", onnx.name, split, out[split])
    return out


def parse_model_spec(spec: str) -> tuple[str, Path, str]:
    """`[NAME=]ONNX[:CLASS]` -> (name, path, incident class); CLASS defaults to `accident`."""
    name, _, rest = spec.rpartition("=") if "=" in spec else ("", "", spec)
    path_text, target = rest, "accident"
    head, sep, tail = rest.rpartition(":")
    if sep and tail and "/" not in tail and not tail.endswith(".onnx"):
        path_text, target = head, tail
    path = Path(path_text)
    return name or path.stem, path, target


def evaluate_models(
    specs: Sequence[str], dataset: Path, splits: Sequence[str], tau_low: float = TAU_LOW, tau_high: float = TAU_HIGH
) -> list[dict[str, Any]]:
    """One JSON-ready row per detector: Fig. 4's metrics on each split, through the onnx backend."""
    from services.models.detectors.base import DetectorError, OnnxDetectorConfig
    from services.models.detectors.onnx_backend import OnnxDetector

    rows = []
    for spec in specs:
        name, path, target = parse_model_spec(spec)
        detector = OnnxDetector(OnnxDetectorConfig(weights=path, min_confidence=0.001))
        if target not in detector.class_names.values():
            raise DetectorError(
                f"{path} has no class {target!r} (it has {', '.join(detector.class_names.values())}); "
                "name the incident class as ONNX:CLASS"
            )
        metrics = {
            s: metrics_dict(gate_metrics(detect_split(detector, dataset, s, target), tau_low, tau_high)) for s in splits
        }
        rows.append({"type": "gate_eval", "design": name, "model": str(path), "target": target, "metrics": metrics})
    return rows
