"""Embedder backends (Venus IV-C1) behind one interface, chosen by a discriminated config (`type`)."""

from services.models.embedders.base import (
    AuxMiniLMEmbedderConfig,
    ClipEmbedderConfig,
    Embedder,
    EmbedderConfig,
    EmbedderError,
    FrameEmbedding,
    build_embedder,
    l2_normalize,
)

__all__ = [
    "AuxMiniLMEmbedderConfig",
    "ClipEmbedderConfig",
    "Embedder",
    "EmbedderConfig",
    "EmbedderError",
    "FrameEmbedding",
    "build_embedder",
    "l2_normalize",
]
