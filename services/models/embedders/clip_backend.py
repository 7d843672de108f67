"""A CLIP-style image-text embedder (transformers CLIPModel) from a local checkpoint directory.

The code that runs CLIP or a CLIP-compatible MEM on real weights. With no such
weights reachable here it is tested on a tiny random CLIPModel
(scripts/make_tiny_clip.py), whose VIGIL_RANDOM_INIT marker this backend reports.

Auxiliary prompts (Venus IV-C1) are fused into the single "clip" vector as the
normalised weighted mean of the image embedding and the prompt's text embedding:
``v = normalize((1 - w) * img + w * text)`` with ``w = aux_weight``; a frame with an
empty prompt keeps its image embedding. Queries are text embeddings in the same space.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from services.models.embedders.base import (
    ClipEmbedderConfig,
    Embedder,
    EmbedderError,
    FrameEmbedding,
    check_inputs,
    check_query,
    l2_normalize,
)
from services.models.random_init import is_random_init

log = logging.getLogger(__name__)

CLIP_VECTOR = "clip"


def _features(output: Any) -> Any:
    """Projected embeddings from get_*_features: a tensor in transformers 4, a pooled output object in 5."""
    return output if hasattr(output, "detach") else output.pooler_output


class ClipEmbedder(Embedder):
    """One named vector "clip": image (fused with its auxiliary prompt) and question share CLIP's space."""

    def __init__(self, config: ClipEmbedderConfig) -> None:
        import torch
        from transformers import CLIPModel, CLIPProcessor

        checkpoint = config.checkpoint
        if not (checkpoint / "config.json").exists():
            raise EmbedderError(f"no CLIP checkpoint (config.json) in {checkpoint}")
        self._config = config
        self._torch = torch
        self._device = torch.device(config.device)
        self._processor: Any = CLIPProcessor.from_pretrained(checkpoint, local_files_only=True)
        model: Any = CLIPModel.from_pretrained(checkpoint, local_files_only=True)
        self._model: Any = model.to(self._device).eval()
        self._dim = int(self._model.config.projection_dim)
        # CLIP's text tower has a fixed position table; longer prompts must be cut, not crash.
        self._max_tokens = int(self._model.config.text_config.max_position_embeddings)
        self._random = is_random_init(checkpoint)
        self._label = checkpoint.name
        if self._random:
            log.warning(
                "CLIP checkpoint %s is a random stand-in (VIGIL_RANDOM_INIT); similarities are noise", checkpoint
            )

    @property
    def name(self) -> str:
        """Model identity."""
        return f"clip:{self._label}" + (" (random init)" if self._random else "")

    @property
    def vector_specs(self) -> dict[str, int]:
        """One shared image-text vector."""
        return {CLIP_VECTOR: self._dim}

    @property
    def limitations(self) -> str:
        """What it cannot understand."""
        base = (
            "CLIP-style embedder: matches free-form descriptions to frames only as well as its weights do; "
            "weak at reading small text, counting objects and recognising actions that unfold over time."
        )
        if self._random:
            return (
                "RANDOM STAND-IN: this CLIP model is randomly initialised (VIGIL_RANDOM_INIT marker), "
                "so it understands nothing and its similarities are meaningless. " + base
            )
        return base

    def embed_text_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Projected, L2-normalised text embeddings, shape (n, dim)."""
        torch = self._torch
        out = []
        for start in range(0, len(texts), self._config.batch_size):
            enc = self._processor.tokenizer(
                list(texts[start : start + self._config.batch_size]),
                padding=True,
                truncation=True,
                max_length=self._max_tokens,
                return_tensors="pt",
            ).to(self._device)
            with torch.inference_mode():
                feats = _features(self._model.get_text_features(**enc))
            out.append(feats.float().cpu().numpy())
        return l2_normalize(np.concatenate(out, axis=0)) if out else np.zeros((0, self._dim), np.float32)

    def embed_pixel_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Projected, L2-normalised image embeddings of BGR images, shape (n, dim)."""
        torch = self._torch
        out = []
        for start in range(0, len(images), self._config.batch_size):
            rgb = [cv2.cvtColor(im, cv2.COLOR_BGR2RGB) for im in images[start : start + self._config.batch_size]]
            pixels = self._processor.image_processor(images=rgb, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                feats = _features(self._model.get_image_features(pixel_values=pixels.to(self._device)))
            out.append(feats.float().cpu().numpy())
        return l2_normalize(np.concatenate(out, axis=0)) if out else np.zeros((0, self._dim), np.float32)

    def embed_frames(self, images: Sequence[np.ndarray], aux_texts: Sequence[str]) -> list[FrameEmbedding]:
        """Image embedding fused with the auxiliary prompt's embedding (see the module docstring)."""
        check_inputs(images, aux_texts)
        if not images:
            return []
        image_vecs = self.embed_pixel_batch(images)
        prompts = [t.strip() for t in aux_texts]
        w = self._config.aux_weight
        with_text = [i for i, p in enumerate(prompts) if p]
        if w > 0.0 and with_text:
            text_vecs = self.embed_text_batch([prompts[i] for i in with_text])
            image_vecs[with_text] = l2_normalize((1.0 - w) * image_vecs[with_text] + w * text_vecs)
        return [FrameEmbedding({CLIP_VECTOR: v}, p) for v, p in zip(image_vecs, prompts, strict=True)]

    def embed_query(self, text: str) -> dict[str, np.ndarray]:
        """The question's text embedding in the shared space."""
        return {CLIP_VECTOR: self.embed_text_batch([check_query(text)])[0]}
