"""Embedder interface pieces that need no model: config validation, normalisation, inputs, prompts, key mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from services.models.embedders import (
    AuxMiniLMEmbedderConfig,
    ClipEmbedderConfig,
    EmbedderConfig,
    EmbedderError,
    l2_normalize,
)
from services.models.embedders.aux_backend import compose_prompt, torchvision_feature_keys
from services.models.embedders.base import TritonEmbedderConfig, check_inputs, check_query
from services.models.random_init import is_random_init

ADAPTER: TypeAdapter[ClipEmbedderConfig | AuxMiniLMEmbedderConfig | TritonEmbedderConfig] = TypeAdapter(EmbedderConfig)


def test_config_discriminates_on_type() -> None:
    assert isinstance(ADAPTER.validate_python({"type": "aux-minilm"}), AuxMiniLMEmbedderConfig)
    clip = ADAPTER.validate_python({"type": "clip", "checkpoint": "/models/clip"})
    assert isinstance(clip, ClipEmbedderConfig)
    assert clip.checkpoint == Path("/models/clip")


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "bge-vl"},
        {"type": "clip"},  # checkpoint is required
        {"type": "aux-minilm", "ocr_thresh": 0.3},  # extra="forbid"
        {"type": "clip", "checkpoint": "/x", "aux_weight": 1.5},
        {"type": "aux-minilm", "batch_size": 0},
    ],
)
def test_config_rejects_bad_values(raw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ADAPTER.validate_python(raw)


def test_l2_normalize_rows_unit_float32_and_zero_safe() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0], [-1e-3, 0.0]], dtype=np.float64)
    y = l2_normalize(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[0], [0.6, 0.8], rtol=1e-6)
    assert np.all(np.isfinite(y)) and np.all(y[1] == 0.0)
    np.testing.assert_allclose(np.linalg.norm(y[[0, 2]], axis=1), 1.0, rtol=1e-6)


def test_check_inputs_rejects_mismatch_and_bad_images() -> None:
    ok = np.zeros((16, 16, 3), np.uint8)
    check_inputs([ok], ["1 x person"])
    with pytest.raises(EmbedderError, match="one text per image"):
        check_inputs([ok, ok], ["x"])
    with pytest.raises(EmbedderError, match="uint8 BGR"):
        check_inputs([np.zeros((16, 16), np.uint8)], [""])
    with pytest.raises(EmbedderError, match="uint8 BGR"):
        check_inputs([np.zeros((16, 16, 3), np.float32)], [""])
    with pytest.raises(EmbedderError, match="too small"):
        check_inputs([np.zeros((4, 16, 3), np.uint8)], [""])


def test_check_query_strips_and_rejects_empty() -> None:
    assert check_query("  a person \n") == "a person"
    with pytest.raises(EmbedderError, match="empty"):
        check_query(" \t ")


def test_compose_prompt_template() -> None:
    assert (
        compose_prompt("3 x person, 1 x bus", ["EXIT 12", "ONLY"]) == "objects: 3 x person, 1 x bus. text: EXIT 12 ONLY"
    )
    assert compose_prompt("", ["EXIT 12"]) == "text: EXIT 12"
    assert compose_prompt(" ", []) == "nothing detected, no text"


def test_random_init_marker(tmp_path: Path) -> None:
    assert not is_random_init(tmp_path)
    (tmp_path / "VIGIL_RANDOM_INIT").write_text("seed=0\n")
    assert is_random_init(tmp_path)


def test_mobilenet_keys_map_flat_blocks_to_torchvision() -> None:
    state = {
        "features.0.0.weight": 0,
        "features.1.conv.0.weight": 1,  # expand ratio 1: dw conv, bn, pw conv, bn
        "features.1.conv.4.bias": 2,
        "features.2.conv.0.weight": 3,  # expanded: pw, bn, dw, bn, pw-linear, bn
        "features.2.conv.3.weight": 4,
        "features.2.conv.6.weight": 5,
        "features.2.conv.7.running_var": 6,
        "features.18.1.bias": 7,
    }
    assert torchvision_feature_keys(state) == {
        "0.0.weight": 0,
        "1.conv.0.0.weight": 1,
        "1.conv.2.bias": 2,
        "2.conv.0.0.weight": 3,
        "2.conv.1.0.weight": 4,
        "2.conv.2.weight": 5,
        "2.conv.3.running_var": 6,
        "18.1.bias": 7,
    }
    with pytest.raises(EmbedderError, match="unexpected MobileNetV2 weight"):
        torchvision_feature_keys({"features.2.conv.6.weight": 0, "features.2.conv.2.weight": 1})
