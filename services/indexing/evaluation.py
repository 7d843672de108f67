"""Scene-boundary agreement: one-to-one greedy matching of cut times and precision/recall/F1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Agreement:
    """Matched (tp), extra (fp) and missed (fn) cuts, with precision, recall and F1."""

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready form, rounded to 3 places."""
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(self.precision, 3),
            "recall": round(self.recall, 3),
            "f1": round(self.f1, 3),
        }


def match_cuts(ours: Sequence[float], reference: Sequence[float], tolerance_s: float) -> tuple[int, int, int]:
    """Pair cuts one-to-one, closest pairs first, within `tolerance_s`; return (tp, fp, fn)."""
    if tolerance_s < 0:
        raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s}")
    pairs = sorted(
        (abs(o - r), i, j) for i, o in enumerate(ours) for j, r in enumerate(reference) if abs(o - r) <= tolerance_s
    )
    used_ours: set[int] = set()
    used_ref: set[int] = set()
    for _, i, j in pairs:
        if i not in used_ours and j not in used_ref:
            used_ours.add(i)
            used_ref.add(j)
    tp = len(used_ours)
    return tp, len(ours) - tp, len(reference) - tp


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1; an empty side counts as perfect (nothing claimed, nothing missed)."""
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def agreement(ours: Sequence[float], reference: Sequence[float], tolerance_s: float) -> Agreement:
    """match_cuts then prf, in one record."""
    tp, fp, fn = match_cuts(ours, reference, tolerance_s)
    return Agreement(tp, fp, fn, *prf(tp, fp, fn))
