"""DAT eq. 1-2: trigger score, gate, valid set."""

import pytest

from services.gating.gate import gate
from services.models.detections import Box, Detection


def det(label: str, p: float, x: float = 0) -> Detection:
    return Detection(Box(x, 0, x + 10, 10), 1 if label == "Fall" else 0, label, p)


def test_trigger_score_is_max_confidence_of_targets() -> None:
    g = gate([det("Fall", 0.3), det("Fall", 0.7), det("Normal", 0.9)], 0.5, {"Fall"})
    assert g.trigger_score == pytest.approx(0.7)
    assert g.gated


def test_valid_set_keeps_only_targets_at_or_above_tau() -> None:
    g = gate([det("Fall", 0.2), det("Fall", 0.5), det("Fall", 0.8), det("Normal", 0.9)], 0.5, {"Fall"})
    assert [d.confidence for d in g.valid] == [0.5, 0.8]


def test_below_threshold_is_not_gated() -> None:
    g = gate([det("Fall", 0.49)], 0.5, {"Fall"})
    assert not g.gated and g.valid == () and g.trigger_score == pytest.approx(0.49)


def test_no_detections() -> None:
    g = gate([], 0.25, None)
    assert g.trigger_score == 0.0 and not g.gated


def test_all_classes_when_targets_none() -> None:
    g = gate([det("Normal", 0.6)], 0.5, None)
    assert g.gated and len(g.valid) == 1


@pytest.mark.parametrize("tau", [0.0, -0.1, 1.5])
def test_tau_out_of_range_rejected(tau: float) -> None:
    with pytest.raises(ValueError):
        gate([], tau, None)
