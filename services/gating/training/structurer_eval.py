"""DAT Tables 1-2 for any structurer: accident understanding and structured-output compliance on labelled frames.

**The evaluation set** (`build_examples`) is every frame of one split of a `cctv_accidents` folder,
split by clip exactly as the gate was trained (`split_clips`, same seed), so the test clips are
ones neither the gate nor anything tuned on val has seen. Per frame:

- the **input** is what the cascade would hand the structurer: the gate's valid detections D+_t
  (the profile's detector at tau_g, its target classes), the context detector's scene, and the
  image, boxed with D+_t (`boxed`, DAT's visual guidance) or as captured (`raw`). The prompt is
  built from the same priors in both cases; only the image differs. Frames the gate would not
  pass are evaluated too, with no detections, so the table measures the whole cascade's answer
  (for the detector-prior structurer, "nothing here").
- the **target** event comes from the labels:
  - `level`, `severity`, `score`, `event_type` from the frame label: `accident` -> level 1,
    `severe`, score 1.0, event_type `accident`; `normal` -> level 0, `none`, score 0.0, `other`.
    There are no severity grades in these labels: every accident is `severe` (level 1).
  - `count` and the accident `objects` from the labelled accident regions (YOLO boxes, converted
    to the schema's 0..1000 corners); a normal frame has count 0 and no objects.
  - what the labels cannot say: whether a level-0 frame is `none` or `minor` (so severity is
    scored as severe vs not), the vehicles and people involved (only accident regions are boxed),
    and any free text (`summary` is not scored). Accident frames without box labels have no known
    count or boxes: they count for severity and compliance only.

**The metrics** (each over the frames it can be measured on; `n_*` fields say how many):

- Count EM: share of frames whose predicted `count` equals the target's. Count MAE: mean
  absolute difference. Frames with a known count only.
- SevAcc: share of frames whose predicted severity agrees with the target on severe vs not
  (`none` and `minor` are one class, the labels cannot tell them apart). SevF1: F1 of the
  `severe` class.
- BBox mIoU: every labelled accident box is matched one-to-one (greedy, highest IoU first) to a
  predicted `accident` object of its frame; the mean IoU over labelled boxes, 0 for an
  unmatched one. Recall@0.5: share of labelled boxes matched with IoU >= 0.5.
- Parse: share of structurer outputs that are JSON objects. Schema: share valid under the
  event shape (`schemas/event.v1.schema.json` without its eq. 4 `anyOf`, `event_schema()`: DAT scores
  the shape and the rule apart). Rule: share satisfying DAT eq. 4 (level 0 -> score in
  [0, gamma), level 1 -> [gamma, 1]), level 1 <=> severity `severe`, and x1 <= x2, y1 <= y2 for
  every box. Viol: share of parsed outputs with any value outside its declared bound (count
  outside 0..20, score outside 0..1, a box coordinate outside 0..1000, more than 8 objects, a
  summary over 160 characters).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np

from services.gating.evidence import draw_boxes
from services.gating.pipeline import FrameGater
from services.gating.training.dataset import DatasetError, LabelledFrame, load_frames, split_clips
from services.models.structurers.base import (
    EventStructurer,
    InvalidModelOutput,
    StructuringRequest,
    event_schema,
    validate_event,
)

log = logging.getLogger(__name__)

INPUTS = ("boxed", "raw")
# What a label says about the event, before the boxes.
_LABEL_TARGET: dict[str, dict[str, Any]] = {
    "accident": {"event_type": "accident", "severity": "severe", "level": 1, "score": 1.0},
    "normal": {"event_type": "other", "severity": "none", "level": 0, "score": 0.0},
}
MAX_OBJECTS = 8


@dataclass(frozen=True)
class Example:
    """One labelled frame and the event a perfect structurer would write for it."""

    frame: LabelledFrame
    target: Mapping[str, Any]

    @property
    def count_known(self) -> bool:
        """Whether the labels give this frame's accident count and boxes."""
        return self.frame.label == "normal" or self.frame.boxes is not None


def yolo_to_corners(box: tuple[float, float, float, float]) -> list[int]:
    """A YOLO (cx, cy, w, h) box in 0..1 as the schema's [x1, y1, x2, y2] in 0..1000."""
    cx, cy, w, h = box
    corners = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    return [round(min(max(v, 0.0), 1.0) * 1000) for v in corners]


def target_event(frame: LabelledFrame, gamma: float) -> dict[str, Any]:
    """The target event of a labelled frame (module docstring: how each field is derived); schema-checked."""
    boxes = frame.boxes or ()
    objects = [{"label": "accident", "bbox": yolo_to_corners(b)} for b in boxes[:MAX_OBJECTS]]
    count = len(boxes) if frame.label == "accident" else 0
    if frame.label == "normal":
        summary = "no accident"
    elif frame.boxes is None:
        summary = "accident; its regions are not labelled"
    else:
        summary = f"{count} accident region(s) labelled"
    event = {**_LABEL_TARGET[frame.label], "count": count, "objects": objects, "summary": summary}
    ordered = {k: event[k] for k in ("event_type", "count", "severity", "level", "score", "objects", "summary")}
    try:
        return validate_event(ordered, gamma)
    except InvalidModelOutput as exc:
        raise DatasetError(f"{frame.image}: its labels give no valid target event: {exc}") from exc


def build_examples(data: Path, split: str, seed: int = 0, gamma: float = 0.5) -> list[Example]:
    """Every frame of one split (by clip, as the gate was trained), with its target; DatasetError names the file."""
    frames = load_frames(data)
    splits = split_clips([f.clip for f in frames], seed)
    if split not in splits:
        raise DatasetError(f"unknown split {split!r}; choose one of {sorted(splits)}")
    clips = set(splits[split])
    chosen = [f for f in frames if f.clip in clips]
    if not chosen:
        raise DatasetError(f"the {split} split of {data} (clips {sorted(clips)}) has no frames")
    return [Example(f, target_event(f, gamma)) for f in chosen]


def read_frame(example: Example) -> np.ndarray:
    """The example's image (BGR); DatasetError naming the file when it cannot be decoded."""
    image = cv2.imread(str(example.frame.image), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"{example.frame.image}: not a readable image")
    return image


def request_for(image: np.ndarray, gater: FrameGater, input_kind: str) -> StructuringRequest:
    """What the cascade hands the structurer for this image: D+_t, the context, the boxed or raw image."""
    if input_kind not in INPUTS:
        raise ValueError(f"unknown input {input_kind!r}; choose one of {INPUTS}")
    _, g = gater.detect_and_gate(image)
    valid = list(g.valid) if g.gated else []
    context = gater.context_of(image, valid)
    shown = draw_boxes(image, valid, gater.params.severe_classes) if input_kind == "boxed" else image
    h, w = image.shape[:2]
    return StructuringRequest(boxed_image=shown, detections=valid, width=w, height=h, context=context)


@dataclass
class Prediction:
    """What the structurer wrote for one example: its raw text, and the event when it was valid."""

    example: Example
    raw: str | None
    event: Mapping[str, Any] | None
    error: str = ""


def predict(
    structurer: EventStructurer, gater: FrameGater, examples: Sequence[Example], input_kind: str
) -> Iterator[Prediction]:
    """Run the structurer on every example; an invalid output is kept (with its raw text) for Table 2."""
    for ex in examples:
        request = request_for(read_frame(ex), gater, input_kind)
        try:
            structured = structurer.structure(request)
        except InvalidModelOutput as exc:
            yield Prediction(ex, exc.raw, None, str(exc))
            continue
        yield Prediction(ex, json.dumps(dict(structured.data)), structured.data)


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(targets: Sequence[Sequence[float]], predicted: Sequence[Sequence[float]]) -> list[float]:
    """The IoU each target box gets in a greedy one-to-one matching (highest IoU first); 0 when unmatched."""
    pairs = sorted(((_iou(t, p), i, j) for i, t in enumerate(targets) for j, p in enumerate(predicted)), reverse=True)
    got = [0.0] * len(targets)
    used_t: set[int] = set()
    used_p: set[int] = set()
    for iou, i, j in pairs:
        if iou <= 0 or i in used_t or j in used_p:
            continue
        got[i] = iou
        used_t.add(i)
        used_p.add(j)
    return got


def _parsed(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def rule_ok(data: Mapping[str, Any], gamma: float) -> bool:
    """DAT eq. 4, level 1 <=> severe, and ordered box corners (on a schema-valid event)."""
    level, score, severity = data["level"], float(data["score"]), data["severity"]
    in_band = (0.0 <= score < gamma) if level == 0 else (gamma <= score <= 1.0)
    corners = all(o["bbox"][0] <= o["bbox"][2] and o["bbox"][1] <= o["bbox"][3] for o in data["objects"])
    return in_band and (level == 1) == (severity == "severe") and corners


def violates_bounds(data: Mapping[str, Any]) -> bool:
    """Any value outside its declared bound (count, score, box coordinates, object count, summary length)."""

    def num(v: Any) -> float | None:
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    count, score = num(data.get("count")), num(data.get("score"))
    given = data.get("objects")
    objects: list[Any] = given if isinstance(given, list) else []
    coords = [num(c) for o in objects if isinstance(o, dict) and isinstance(o.get("bbox"), list) for c in o["bbox"]]
    summary = data.get("summary")
    return (
        (count is not None and not 0 <= count <= 20)
        or (score is not None and not 0.0 <= score <= 1.0)
        or any(c is not None and not 0 <= c <= 1000 for c in coords)
        or len(objects) > MAX_OBJECTS
        or (isinstance(summary, str) and len(summary) > 160)
    )


@dataclass
class Metrics:
    """Tables 1 and 2 for one structurer on one split, with the counts each rate is over."""

    values: dict[str, float | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def _rate(num: float, den: int) -> float | None:
    return round(num / den, 4) if den else None


def score(predictions: Sequence[Prediction], gamma: float) -> Metrics:
    """Count EM/MAE, SevAcc/F1, BBox mIoU, Recall@0.5, Parse, Schema, Rule, Viol (module docstring)."""
    validator = jsonschema.Draft202012Validator(event_schema())
    count_hits, count_err, n_count = 0, 0.0, 0
    sev_hits, tp, fp, fn = 0, 0, 0, 0
    ious: list[float] = []
    parsed_n = schema_n = rule_n = viol_n = 0
    for p in predictions:
        data = _parsed(p.raw)
        schema_valid = data is not None and validator.is_valid(data)
        if data is not None:
            parsed_n += 1
            viol_n += violates_bounds(data)
        if schema_valid:
            assert data is not None
            schema_n += 1
            rule_n += rule_ok(data, gamma)
        # Understanding is scored on what the system would use: the validated event, else "no event".
        event = p.event or {}
        pred_severe = event.get("severity") == "severe"
        true_severe = p.example.target["severity"] == "severe"
        sev_hits += pred_severe == true_severe
        tp += pred_severe and true_severe
        fp += pred_severe and not true_severe
        fn += true_severe and not pred_severe
        if p.example.count_known:
            n_count += 1
            diff = abs(int(event.get("count", 0)) - int(p.example.target["count"]))
            count_hits += diff == 0
            count_err += diff
            targets = [o["bbox"] for o in p.example.target["objects"]]
            predicted = [o["bbox"] for o in event.get("objects", []) if o.get("label") == "accident"]
            ious += match_boxes(targets, predicted)
    n = len(predictions)
    f1_den = 2 * tp + fp + fn
    return Metrics(
        values={
            "count_em": _rate(count_hits, n_count),
            "count_mae": _rate(count_err, n_count),
            "sev_acc": _rate(sev_hits, n),
            "sev_f1": round(2 * tp / f1_den, 4) if f1_den else None,
            "bbox_miou": round(float(np.mean(ious)), 4) if ious else None,
            "recall_at_0_5": _rate(sum(i >= 0.5 for i in ious), len(ious)),
            "parse": _rate(parsed_n, n),
            "schema": _rate(schema_n, n),
            "rule": _rate(rule_n, n),
            "viol": _rate(viol_n, parsed_n),
        },
        counts={"n_frames": n, "n_count": n_count, "n_boxes": len(ious), "n_parsed": parsed_n},
    )


def evaluate(
    structurer: EventStructurer,
    gater: FrameGater,
    examples: Sequence[Example],
    input_kind: str,
    gamma: float,
    tuning: str,
) -> dict[str, Any]:
    """One JSON record: which structurer and input, every metric, the counts, and whether its weights are random.

    `tuning` is Table 1's column: `LoRA`, `none` (a base checkpoint) or `n/a` (no language model).
    """
    t0 = time.perf_counter()
    predictions = list(predict(structurer, gater, examples, input_kind))
    metrics = score(predictions, gamma)
    producer = structurer.producer
    return {
        "type": "eval_structurer",
        "structurer": f"{producer.kind}:{producer.name}",
        "input": input_kind,
        "tuning": tuning,
        "random_init": producer.random_init,
        "detector": gater.detector.name,
        **metrics.values,
        **metrics.counts,
        "invalid_outputs": sum(p.event is None for p in predictions),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def markdown_tables(rows: Sequence[Mapping[str, Any]]) -> str:
    """Tables 1 and 2 laid out as in DAT, one row per evaluated structurer and input."""

    def who(r: Mapping[str, Any]) -> str:
        return r["structurer"] + (" (RANDOM weights: meaningless)" if r["random_init"] else "")

    t1 = [
        "| Structurer | Input | Tuning | Count EM | Count MAE | SevAcc | SevF1 | BBox mIoU | Recall@0.5 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    t2 = ["| Structurer | Input | Parse | Schema | Rule | Viol. |", "|---|---|---|---|---|---|"]
    for r in rows:
        t1.append(
            f"| {who(r)} | {r['input']} | {r['tuning']} | {_pct(r['count_em'])} | {_num(r['count_mae'])} | "
            f"{_pct(r['sev_acc'])} | {_pct(r['sev_f1'])} | {_pct(r['bbox_miou'])} | {_pct(r['recall_at_0_5'])} |"
        )
        t2.append(
            f"| {who(r)} | {r['input']} | {_num(r['parse'])} | {_num(r['schema'])} | {_num(r['rule'])} | "
            f"{_num(r['viol'])} |"
        )
    return (
        "Table 1: structured accident understanding\n\n"
        + "\n".join(t1)
        + "\n\nTable 2: structured output compliance\n\n"
        + "\n".join(t2)
    )
