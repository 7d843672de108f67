"""Build the indexing stage from settings (shared by the service and the embedded pipeline)."""

from __future__ import annotations

from services.indexing.config import IndexingConfig
from services.indexing.stream import ClusterEmbedder
from services.models.detectors.base import Detector, build_detector
from services.models.embedders.base import Embedder, build_embedder


def build_cluster_embedder(
    config: IndexingConfig, *, embedder: Embedder | None = None, detector: Detector | None = None
) -> ClusterEmbedder:
    """The describe-and-embed stage; an embedder or detector already loaded elsewhere may be shared."""
    if detector is None and config.detector is not None:
        detector = build_detector(config.detector)
    return ClusterEmbedder(
        embedder or build_embedder(config.embedder),
        detector,
        config.class_phrases,
        config.aux_min_confidence,
    )
