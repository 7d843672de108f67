"""Embedder backends (Venus IV-C1) behind one interface, chosen by a discriminated config (`type`)."""

from services.indexing.embedders.base import (
    RANDOM_INIT_MARKER,
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
    "RANDOM_INIT_MARKER",
    "AuxMiniLMEmbedderConfig",
    "ClipEmbedderConfig",
    "Embedder",
    "EmbedderConfig",
    "EmbedderError",
    "FrameEmbedding",
    "build_embedder",
    "l2_normalize",
]
