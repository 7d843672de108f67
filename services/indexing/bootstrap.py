"""Composition root of indexing: the describe-and-embed stage, its manual-ack consumer and its flusher."""

from __future__ import annotations

import logging

from services.common.bus import Bus, Message
from services.common.runtime import Stage
from services.indexing.config import IndexingConfig, IndexingSettings
from services.indexing.consumer import IndexingHandler
from services.indexing.stream import ClusterEmbedder
from services.models.detectors.base import Detector, build_detector
from services.models.embedders.base import Embedder, build_embedder

log = logging.getLogger(__name__)


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


class IndexingStage(Stage):
    """Frames topic -> scenes, clusters, embeddings -> index topic.

    Frames are acknowledged only once their cluster's entry is published (manual ack), so a
    restart re-reads the open clusters; on the way out the open clusters are closed and published.
    """

    def __init__(self, settings: IndexingSettings, bus: Bus, embedder: ClusterEmbedder, *, idle_flush: bool) -> None:
        topics, cfg = settings.topics, settings.indexing

        def ack(msg: Message) -> None:
            consumer.ack(msg)

        self.handler = IndexingHandler(embedder, bus, topics.index, cfg, ack=ack)
        consumer = bus.consumer(
            [topics.frames],
            cfg.consumer_group,
            self.handler,
            dead_letter_topic=topics.dead_letter(topics.frames),
            manual_ack=True,
        )
        super().__init__(
            "indexing",
            consumers=[consumer],
            loops=[("idle-flush", self.handler.run_idle_flusher)] if idle_flush else [],
            on_drained=[self._close_open_clusters],
            description=f"{topics.frames} -> {topics.index} with {embedder.embedder.name}",
        )

    def _close_open_clusters(self) -> None:
        # The consumer has stopped: every camera's open cluster is closed, published and its frames acked.
        log.info("closed open clusters on shutdown: %d index entries", self.handler.flush_all())


def build(
    settings: IndexingSettings,
    bus: Bus | None,
    *,
    embedder: Embedder | None = None,
    detector: Detector | None = None,
    idle_flush: bool = True,
) -> IndexingStage:
    """The indexing stage; an embedder or detector loaded elsewhere may be shared.

    `idle_flush=False` leaves open clusters open until the stage closes (a file run by
    `vigil run` is flushed once at its end instead of by wall-clock quiet time).
    """
    if bus is None:
        raise ValueError("indexing needs a bus")
    stage = build_cluster_embedder(settings.indexing, embedder=embedder, detector=detector)
    return IndexingStage(settings, bus, stage, idle_flush=idle_flush)
