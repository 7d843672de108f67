"""DAT semantic gating (section 3.2.1): trigger score s_t, gate g_t and valid set D+_t (eq. 1-2)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from services.models.detections import Detection


@dataclass(frozen=True)
class GateResult:
    """s_t, g_t and D+_t for one frame."""

    trigger_score: float
    gated: bool
    valid: tuple[Detection, ...]


def gate(detections: Sequence[Detection], tau_g: float, target_classes: Collection[str] | None) -> GateResult:
    """s_t = max p over target-class detections; g_t = 1(s_t >= tau_g); D+_t = those with p >= tau_g.

    The paper's detector only knows incident classes, so "all candidates" are
    targets there. Our detectors also see ordinary classes (a standing person),
    so `target_classes` names which classes count as incidents; None = all.
    """
    if not 0.0 < tau_g <= 1.0:
        raise ValueError(f"tau_g must be in (0, 1], got {tau_g}")
    targets = [d for d in detections if target_classes is None or d.label in target_classes]
    s_t = max((d.confidence for d in targets), default=0.0)
    valid = tuple(d for d in targets if d.confidence >= tau_g)
    return GateResult(trigger_score=s_t, gated=s_t >= tau_g, valid=valid)
