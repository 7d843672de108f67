"""The scene around an incident: which of the COCO detector's vehicles and people are involved.

Pure geometry over two detectors' outputs on the same frame: the gate's incident boxes (accident
regions) and the context detector's objects. An object is *involved* when its box overlaps an incident
box grown by `margin` of that box's width and height on each side: the cars in a collision, the person
lying beside it. Everything else in view is counted, not described.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.models.detections import Box, Detection

# COCO classes that matter on a road, and the event schema's object label for each.
CONTEXT_LABELS: dict[str, str] = {
    "car": "vehicle",
    "truck": "vehicle",
    "bus": "vehicle",
    "motorcycle": "vehicle",
    "bicycle": "vehicle",
    "train": "vehicle",
    "person": "person",
}


@dataclass(frozen=True)
class SceneContext:
    """The context detector's view of a gated frame."""

    involved: tuple[Detection, ...]
    in_view: tuple[Detection, ...]

    def counts(self) -> dict[str, int]:
        """Objects in view by class, most frequent first."""
        return count_labels(d.label for d in self.in_view)


def _grown(box: Box, margin: float) -> Box:
    dx, dy = (box.x2 - box.x1) * margin, (box.y2 - box.y1) * margin
    return Box(box.x1 - dx, box.y1 - dy, box.x2 + dx, box.y2 + dy)


def _overlaps(a: Box, b: Box) -> bool:
    return min(a.x2, b.x2) > max(a.x1, b.x1) and min(a.y2, b.y2) > max(a.y1, b.y1)


def scene_context(incidents: Sequence[Detection], objects: Sequence[Detection], margin: float = 0.25) -> SceneContext:
    """Split the context objects of a frame into those involved in an incident and the rest in view.

    Confidence is the context detector's own `min_confidence` (0.3 in the traffic profile), not filtered again here.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    relevant = sorted((d for d in objects if d.label in CONTEXT_LABELS), key=lambda d: -d.confidence)
    zones = [_grown(d.box, margin) for d in incidents]
    involved = tuple(d for d in relevant if any(_overlaps(d.box, z) for z in zones))
    return SceneContext(involved=involved, in_view=tuple(relevant))


def count_labels(labels: Iterable[str]) -> dict[str, int]:
    """Label -> count, most frequent first, then by name."""
    counts = Counter(labels)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def describe_counts(counts: dict[str, int]) -> str:
    """'3 car, 1 bus, 2 person'-style text ('' when empty)."""
    return ", ".join(f"{n} {label}" for label, n in counts.items())
