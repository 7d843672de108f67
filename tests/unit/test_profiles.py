"""Profiles: traffic (default) and people fill the detector settings they are not given; flags are validated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.common.config import load_settings
from services.gating.config import GatingConfig, GatingSettings
from services.indexing.config import IndexingConfig


def test_traffic_is_the_default() -> None:
    cfg = GatingConfig()
    assert cfg.profile == "traffic"
    assert cfg.detector.type == "onnx" and cfg.detector.model == "accident"  # type: ignore[union-attr]
    assert cfg.context_detector is not None and cfg.context_detector.model == "coco"  # type: ignore[union-attr]
    assert cfg.target_classes == "accident" and (cfg.tau_g, cfg.tau_high) == (0.25, 0.8)
    assert IndexingConfig().detector.model == "coco"  # type: ignore[union-attr]


def test_people_profile() -> None:
    cfg = GatingConfig(profile="people")
    assert cfg.detector.model == "fall" and cfg.context_detector is None  # type: ignore[union-attr]
    assert cfg.target_classes == "Fall"
    icfg = IndexingConfig(profile="people")
    assert icfg.detector.model == "fall" and icfg.class_phrases["Fall"] == "person fallen on the ground"  # type: ignore[union-attr]


def test_explicit_settings_win_over_the_profile() -> None:
    # Settings arrive as plain data (environment, flags, Helm values), hence model_validate.
    cfg = GatingConfig.model_validate({"profile": "people", "target_classes": "*", "detector": {"type": "ultralytics"}})
    assert cfg.target_classes == "*"
    # A backend chosen without weights still runs the profile's model.
    assert cfg.detector.type == "ultralytics" and cfg.detector.model == "fall"  # type: ignore[union-attr]
    # Weights win over the profile's model (a file of one's own); a partial block keeps the rest of the preset.
    explicit = GatingConfig.model_validate({"detector": {"weights": "/x.onnx"}})
    assert explicit.detector.type == "onnx" and str(explicit.detector.weights) == "/x.onnx"  # type: ignore[union-attr]
    partial = GatingConfig.model_validate({"context_detector": {"intra_op_threads": 1}})
    ctx = partial.context_detector
    assert ctx is not None and (ctx.model, ctx.min_confidence, ctx.intra_op_threads) == ("coco", 0.3, 1)  # type: ignore[union-attr]


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError, match="known profiles: traffic, people"):
        GatingConfig(profile="cars")  # type: ignore[arg-type]


def test_flags_are_validated_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_GATING__PROFILE", "people")
    monkeypatch.setenv("VIGIL_GATING__INCIDENT_COOLDOWN_S", "2")
    s = load_settings(GatingSettings, gating={"tau_g": 0.3})
    assert (s.gating.profile, s.gating.tau_g, s.gating.incident_cooldown_s) == ("people", 0.3, 2.0)
    with pytest.raises(ValidationError, match="tau_g"):
        load_settings(GatingSettings, gating={"tau_g": 5})
    with pytest.raises(ValidationError, match="tau_high"):
        load_settings(GatingSettings, gating={"tau_g": 0.9})
