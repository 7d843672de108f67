"""Settings of the indexing service (env: VIGIL_INDEXING__*, plus the common VIGIL_BUS__*, VIGIL_TOPICS__*)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.config import CommonSettings
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
