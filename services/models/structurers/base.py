"""Structured events (DAT section 3.2.2): the schema, the eq. 4 rule, and the structurer interface.

An :class:`EventStructurer` turns a triggered frame (boxed image + the detector's
valid detections D+_t) into the event JSON of ``schemas/event.v1.schema.json``.
Two implementations: :class:`DetectorPriorStructurer` here (fills the schema
from detections alone; the default when no VLM weights are configured) and
``services.models.structurers.qwen_vl.QwenVLStructurer`` (Qwen2.5-VL with constrained
decoding). Whatever produced the JSON, :func:`validate_event` checks it before
anything is published; invalid output raises :class:`InvalidModelOutput`.
"""

from __future__ import annotations

import copy
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from services.models.context import CONTEXT_LABELS, SceneContext, count_labels, describe_counts
from services.models.detections import Detection

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "schemas" / "event.v1.schema.json"


class InvalidModelOutput(ValueError):
    """The model's output is not a valid event (unparsable, off-schema, or breaks eq. 4).

    `raw` is the text the model wrote, when there was one: the structurer evaluation scores it
    (Parse, Schema, Rule, Viol) even though the pipeline cannot use it.
    """

    def __init__(self, message: str, raw: str | None = None) -> None:
        super().__init__(message)
        self.raw = raw


DEFAULT_GAMMA = 0.5


@cache
def _schema_file() -> dict[str, Any]:
    with SCHEMA_PATH.open() as f:
        schema: dict[str, Any] = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


@cache
def event_schema(gamma: float | None = None) -> dict[str, Any]:
    """The event JSON schema from the repository file; with `gamma`, its eq. 4 anyOf at that gamma.

    Without `gamma` it is the event's shape alone (keys, types, bounds): the file less its anyOf,
    which holds eq. 4 and level 1 <=> 'severe' (the evaluation scores the shape and those rules apart).
    Callers must not modify the returned dict (it is cached).
    """
    schema = copy.deepcopy(_schema_file())
    rules = schema.pop("anyOf")
    if gamma is None:
        return schema
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma must be in (0, 1), got {gamma}")
    for branch in rules:
        # The file shows gamma = 0.5; each branch's one score bound is gamma (level 0 below it, level 1 from it).
        score = branch["properties"]["score"]
        for bound in ("exclusiveMaximum", "minimum"):
            if bound in score:
                score[bound] = gamma
    return {**schema, "anyOf": rules}


@cache
def _validator(gamma: float | None) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(event_schema(gamma))


@dataclass(frozen=True)
class ProducerInfo:
    """Which model wrote an event; random_init marks a stand-in whose text means nothing."""

    kind: str
    name: str
    random_init: bool = False
    note: str = ""
    # The LoRA adapter version the structurer ran with ("" = none or not applicable).
    adapter: str = ""


@dataclass(frozen=True)
class StructuredEvent:
    """A validated event: the parsed JSON, its canonical bytes, and who produced it."""

    data: Mapping[str, Any]
    producer: ProducerInfo

    @property
    def level(self) -> int:
        """DAT discrete priority level l."""
        return int(self.data["level"])

    @property
    def score(self) -> float:
        """DAT continuous priority score r."""
        return float(self.data["score"])

    def to_json_bytes(self) -> bytes:
        """Compact UTF-8 JSON, exactly the bytes that cross the uplink (c_json is its length)."""
        return json.dumps(self.data, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class StructuringRequest:
    """Inputs of eq. 3: the boxed image I_t, and the priors the prompt p_t is built from."""

    boxed_image: np.ndarray  # BGR uint8
    detections: Sequence[Detection]  # D+_t
    width: int
    height: int
    camera_id: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)
    # What the context detector (COCO) saw on the same frame; None when the profile has none.
    context: SceneContext | None = None


def check_eq4(level: int, score: float, gamma: float) -> None:
    """DAT eq. 4: level 0 => score in [0, gamma); level 1 => score in [gamma, 1]."""
    if level == 0 and not 0.0 <= score < gamma:
        raise InvalidModelOutput(f"eq. 4 violated: level 0 needs score in [0, {gamma}), got {score}")
    if level == 1 and not gamma <= score <= 1.0:
        raise InvalidModelOutput(f"eq. 4 violated: level 1 needs score in [{gamma}, 1], got {score}")


def _raise_first_error(validator: jsonschema.Draft202012Validator, data: Mapping[str, Any]) -> None:
    errors = sorted(validator.iter_errors(data), key=str)
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise InvalidModelOutput(f"schema violation at {where}: {e.message}")


def validate_event(raw: str | bytes | Mapping[str, Any], gamma: float) -> dict[str, Any]:
    """Parse and validate event JSON: schema, eq. 4, level 1 <=> severity 'severe'; box corners come back sorted."""
    if isinstance(raw, str | bytes):
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidModelOutput(f"not JSON: {exc}") from exc
    else:
        data = dict(raw)
    if not isinstance(data, dict):
        raise InvalidModelOutput(f"event must be a JSON object, got {type(data).__name__}")
    # The shape first, then the rules one by one: a failed anyOf alone says nothing a person can act on.
    _raise_first_error(_validator(None), data)
    check_eq4(data["level"], data["score"], gamma)
    if (data["level"] == 1) != (data["severity"] == "severe"):
        raise InvalidModelOutput(
            f"inconsistent: level {data['level']} with severity {data['severity']!r} (level 1 <=> 'severe')"
        )
    # The last word: the whole schema at this gamma (agrees with the checks above unless they drift apart).
    _raise_first_error(_validator(gamma), data)
    for obj in data["objects"]:
        # Corners given the other way round name the same box: sorted, not refused (the schema checked the range).
        x1, y1, x2, y2 = obj["bbox"]
        obj["bbox"] = [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]
    return data


class EventStructurer(ABC):
    """Writes the structured event for one triggered frame (DAT eq. 3)."""

    @property
    @abstractmethod
    def producer(self) -> ProducerInfo:
        """Identity of the model behind this structurer."""

    @abstractmethod
    def structure(self, request: StructuringRequest) -> StructuredEvent:
        """Return a validated event; raise InvalidModelOutput when the model's output is unusable."""


class AdaptableStructurer(EventStructurer):
    """A structurer whose LoRA adapter can be swapped while it runs, between two events (DAT section 3.1).

    Versions are names chosen by the publisher; "" is the base model without an adapter.
    """

    @property
    @abstractmethod
    def base_model(self) -> str:
        """The checkpoint directory name adapters must have been trained on."""

    @property
    @abstractmethod
    def adapter_version(self) -> str:
        """The version writing events now ("" = none)."""

    @abstractmethod
    def loaded_adapters(self) -> Sequence[str]:
        """Versions held in memory, ready to activate at once."""

    @abstractmethod
    def load_adapter(self, path: Path, version: str) -> None:
        """Load an adapter directory without activating it; ValueError when its weights do not fit the model."""

    @abstractmethod
    def activate_adapter(self, version: str) -> None:
        """Make a loaded version (or "" for the base model) write the next event."""

    @abstractmethod
    def unload_adapter(self, version: str) -> None:
        """Free a loaded version that is not active."""


@dataclass(frozen=True)
class ClassSemantics:
    """What a detector class means for an event: its schema label and whether it is severe."""

    object_label: str
    event_type: str
    severe: bool


# The gate detectors' classes: our accident detector's `accident` (the collision region; the labels have
# no severity grades, so an accident is severe), and the fall model's Normal/Fall people.
DEFAULT_CLASS_SEMANTICS: Mapping[str, ClassSemantics] = {
    "accident": ClassSemantics(object_label="accident", event_type="accident", severe=True),
    "Fall": ClassSemantics(object_label="fallen_person", event_type="fall", severe=True),
    "Normal": ClassSemantics(object_label="person", event_type="person", severe=False),
}


class DetectorPriorStructurer(EventStructurer):
    """Fills the event schema from the detectors alone; no language model runs.

    The rules, each inside eq. 4's bands by construction:

    - **level** = 1 when any valid detection D+_t is of a severe class (`accident`, `Fall`), else 0;
      **severity** is `severe` at level 1, `minor` for a level-0 detection, `none` without one.
    - **score**: level 1 -> gamma + (1 - gamma) * p_max, level 0 -> gamma * p_max, with p_max the
      highest confidence of the detections that decided the level; rounded down to four decimals so it
      never leaves its band.
    - **count**: the incident regions (severe detections) at level 1, else every valid detection.
    - **objects**: the incident regions first, then the context detector's vehicles and people involved
      in them (overlapping the region grown by a margin), at most `max_objects`, boxes in 0..1000.
    - **summary**: what the detectors saw, nothing more: the incident class and confidence, the involved
      objects by class, and the counts in view.

    It cannot describe anything the detectors have no class for: not damage, injuries or causes.
    """

    def __init__(
        self,
        detector_name: str,
        gamma: float = 0.5,
        semantics: Mapping[str, ClassSemantics] = DEFAULT_CLASS_SEMANTICS,
        max_objects: int = 8,
    ) -> None:
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"gamma must be in (0, 1), got {gamma}")
        self._gamma = gamma
        self._semantics = dict(semantics)
        self._max_objects = max_objects
        self._producer = ProducerInfo(
            kind="detector-prior",
            name=detector_name,
            note="filled from detector classes and boxes; no VLM ran",
        )

    @property
    def producer(self) -> ProducerInfo:
        """This structurer's identity."""
        return self._producer

    def _sem(self, label: str) -> ClassSemantics:
        return self._semantics.get(label, ClassSemantics(object_label="other", event_type="other", severe=False))

    def structure(self, request: StructuringRequest) -> StructuredEvent:
        """Map D+_t (and the context objects) to the schema."""
        dets = sorted(request.detections, key=lambda d: -d.confidence)
        severe = [d for d in dets if self._sem(d.label).severe]
        deciding = severe or dets
        level = 1 if severe else 0
        p_max = max((d.confidence for d in deciding), default=0.0)
        g = self._gamma
        if level:
            score = max(g, min(1.0, float(np.floor((g + (1 - g) * p_max) * 1e4) / 1e4)))
        else:
            score = min(float(np.floor(g * p_max * 1e4) / 1e4), float(np.floor(g * 1e4) - 1) / 1e4)
        event_type = self._sem(deciding[0].label).event_type if deciding else "other"
        count = len(severe) if level else len(dets)
        w, h = request.width, request.height
        objects = [{"label": self._sem(d.label).object_label, "bbox": d.box.normalised(w, h)} for d in dets]
        involved = request.context.involved if request.context is not None else ()
        objects += [{"label": CONTEXT_LABELS[d.label], "bbox": d.box.normalised(w, h)} for d in involved]
        data = {
            "event_type": event_type,
            "count": min(count, 20),
            "severity": "severe" if level else ("minor" if dets else "none"),
            "level": level,
            "score": score,
            "objects": objects[: self._max_objects],
            "summary": self._summary(deciding, p_max, request.context),
        }
        return StructuredEvent(data=validate_event(data, g), producer=self._producer)

    @staticmethod
    def _summary(deciding: Sequence[Detection], p_max: float, context: SceneContext | None) -> str:
        if not deciding:
            return "no detections"
        text = f"{len(deciding)} x {deciding[0].label} detected (max confidence {p_max:.2f})"
        if context is not None:
            involved = describe_counts(count_labels(d.label for d in context.involved))
            in_view = describe_counts(context.counts())
            text += f"; involved: {involved or 'none detected'}; in view: {in_view or 'nothing detected'}"
        # The schema caps the summary at 160 characters; cut at a separator, not mid-word.
        if len(text) > 160:
            text = text[:157].rsplit(",", 1)[0] + "..."
        return text
