"""Settings of the indexing service (env: VIGIL_INDEXING__*, plus the common VIGIL_BUS__*, VIGIL_TOPICS__*)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.config import CommonSettings
from services.indexing.clustering import ContentSplit
from services.indexing.scenes import SceneParams
from services.models.detectors.base import DetectorConfig, OnnxDetectorConfig
from services.models.detectors.profiles import Profile, apply_profile
from services.models.embedders.base import AuxMiniLMEmbedderConfig, EmbedderConfig


class SceneConfig(BaseModel):
    """Eq. 1's weights and threshold, the forced split for static cameras, the working resolution."""

    model_config = ConfigDict(extra="forbid")

    # Hue, saturation, lightness, edges.
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 0.0)
    threshold: float = Field(default=27.0, gt=0.0)
    max_scene_s: float = Field(default=60.0, gt=0.0)
    min_scene_s: float = Field(default=0.5, ge=0.0)
    width: int = Field(default=160, ge=16)

    def params(self) -> SceneParams:
        """As the segmenter's parameters."""
        return SceneParams(self.weights, self.threshold, self.max_scene_s, self.min_scene_s, self.width)


class ContentSplitConfig(BaseModel):
    """On a fixed camera, split clusters when what is in view changes (detector counts), not when pixels move."""

    model_config = ConfigDict(extra="forbid")

    # False: any frame past cluster_threshold starts a cluster, as in the paper (also what happens without a detector).
    enabled: bool = True
    # RMS thumbnail distance beyond which a cluster splits whatever the detector says (light, a moved camera).
    drift_threshold: float = Field(default=0.2, gt=0.0)
    # The detector looks at most once per this much stream time, and only at frames past cluster_threshold.
    detect_interval_s: float = Field(default=1.0, ge=0.0)
    # Detector runs in a row that must see the same new content before a split (one flickering box is not a change).
    confirm: int = Field(default=3, ge=1)
    # A class count is a change when it moves by more than this share of the larger count and by more than
    # count_slack (5 -> 7 cars, or 1 -> 3, is not; 2 -> 9 is); a class coming or going always is.
    count_tolerance: float = Field(default=0.5, ge=0.0)
    count_slack: int = Field(default=2, ge=0)
    # A frame within cluster_threshold is still a candidate when a cell of a 4x3 grid over the thumbnail changed by
    # this much (mean, 0-1 grey levels) since the detector last looked: one truck barely moves the whole-frame mean.
    local_threshold: float = Field(default=0.03, gt=0.0)

    def params(self) -> ContentSplit | None:
        """As the clusterer's parameters (None when disabled)."""
        if not self.enabled:
            return None
        return ContentSplit(
            self.drift_threshold,
            self.detect_interval_s,
            self.confirm,
            self.count_tolerance,
            self.count_slack,
            self.local_threshold,
        )


# The same profiles as gating (services/gating/config.py): what describes an index frame in each.
INDEXING_PROFILES: dict[str, dict[str, Any]] = {
    # COCO's own class names are the words a question uses: "3 car, 1 bus, 2 person".
    "traffic": {"detector": {"type": "onnx", "model": "coco"}, "class_phrases": {}},
    # The fall model's classes are postures of people, so both read "person".
    "people": {
        "detector": {"type": "onnx", "model": "fall"},
        "class_phrases": {"Normal": "person", "Fall": "person fallen on the ground"},
    },
}


class IndexingConfig(BaseModel):
    """Scene segmentation, clustering, auxiliary prompts and the embedder of index frames."""

    model_config = ConfigDict(extra="forbid")

    scenes: SceneConfig = SceneConfig()
    # RMS distance (0-1 grey levels on a 32x18 thumbnail) within which a frame joins the open cluster.
    cluster_threshold: float = Field(default=0.08, gt=0.0)
    # Frames past cluster_threshold split only if `detector` sees a change in view.
    content_split: ContentSplitConfig = ContentSplitConfig()
    embedder: EmbedderConfig = AuxMiniLMEmbedderConfig()
    # `traffic` (default) or `people`: sets `detector` and `class_phrases` when they are not given.
    profile: Profile = "traffic"
    # The detector whose classes and counts become each index frame's auxiliary prompt (None: no detector text).
    detector: DetectorConfig | None = OnnxDetectorConfig(model="coco")
    aux_min_confidence: float = Field(default=0.35, ge=0.0, le=1.0)
    # Detector class -> the words a question would use for it (a class not listed reads as its name).
    class_phrases: dict[str, str] = {}
    # A camera whose stream goes quiet this long has its open cluster closed and indexed, so the
    # tail of a video (or a camera that went away) reaches the memory.
    idle_flush_s: float = Field(default=10.0, gt=0.0)
    consumer_group: str = "vigil-indexing"

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any) -> Any:
        return apply_profile(data, INDEXING_PROFILES) if isinstance(data, dict) else data


class IndexingSettings(CommonSettings):
    """Everything the indexing process reads at start-up."""

    indexing: IndexingConfig = Field(default_factory=IndexingConfig)
