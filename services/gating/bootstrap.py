"""Composition root of gating: the only place that builds detectors, structurers and the bus."""

from __future__ import annotations

from services.gating.config import GatingConfig
from services.gating.pipeline import FrameGater, GatingParams, parse_classes
from services.models.detectors import build_detector
from services.models.detectors.base import Detector
from services.models.structurers.base import DetectorPriorStructurer, EventStructurer
from services.models.structurers.config import QwenVLConfig, TritonVLMConfig


def build_structurer(config: GatingConfig, detector: Detector) -> EventStructurer:
    """The configured structurer: Qwen2.5-VL from a checkpoint or on Triton, or the detector-prior one."""
    s = config.structurer
    if isinstance(s, TritonVLMConfig):
        from services.models.structurers.triton_vlm import TritonVLMStructurer

        return TritonVLMStructurer(s, gamma=config.gamma)
    if isinstance(s, QwenVLConfig):
        from services.models.structurers.qwen_vl import QwenVLStructurer

        return QwenVLStructurer(
            checkpoint=s.checkpoint,
            lora=s.lora,
            device=s.device,
            max_new_tokens=s.max_new_tokens,
            gamma=config.gamma,
        )
    return DetectorPriorStructurer(detector.name, gamma=config.gamma)


def params_from_config(config: GatingConfig) -> GatingParams:
    """Domain parameters from settings."""
    return GatingParams(
        tau_g=config.tau_g,
        tau_high=config.tau_high,
        context_margin=config.context_margin,
        target_classes=parse_classes(config.target_classes),
        severe_classes=parse_classes(config.severe_classes) or frozenset(),
        iou_threshold=config.incident_iou,
        cooldown_s=config.incident_cooldown_s,
        motion_gate=config.motion_gate,
        motion_threshold=config.motion_threshold,
        motion_max_skip=config.motion_max_skip,
        motion_local_threshold=config.motion_local_threshold,
        motion_max_skip_s=config.motion_max_skip_s,
        jpeg_quality=config.jpeg_quality,
    )


def build_gater(
    config: GatingConfig, detector: Detector | None = None, context_detector: Detector | None = None
) -> FrameGater:
    """A FrameGater wired from settings (detectors may be passed in to share them)."""
    detector = detector or build_detector(config.detector)
    if context_detector is None and config.context_detector is not None:
        context_detector = build_detector(config.context_detector)
    structurer = build_structurer(config, detector)
    # Confident detections (s_t >= tau_high) are written from the detectors' priors, never queued for the MLLM.
    confident = (
        structurer
        if isinstance(structurer, DetectorPriorStructurer)
        else DetectorPriorStructurer(detector.name, gamma=config.gamma)
    )
    return FrameGater(
        detector,
        structurer,
        params_from_config(config),
        context_detector=context_detector,
        confident_structurer=confident,
    )
