"""The per-frame gating pipeline: motion pre-gate -> detector -> gate -> incident grouping -> evidence -> event.

Pure domain code: frames in, domain events out. The Kafka consumer and the
gRPC server are thin layers over :class:`FrameGater`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.gating.evidence import EncodedEvidence, make_evidence
from services.gating.gate import GateResult, gate
from services.gating.incidents import IncidentGrouper
from services.gating.motion import MotionGate
from services.models.context import SceneContext, scene_context
from services.models.detections import Detection
from services.models.detectors.base import Detector
from services.models.structurers.base import (
    EventStructurer,
    InvalidModelOutput,
    StructuredEvent,
    StructuringRequest,
)

log = logging.getLogger(__name__)

# Event ids are UUID5 of (camera, frame time, frame seq): a frame handled twice
# after a crash yields the same id, so users can de-duplicate redeliveries.
EVENT_NAMESPACE = uuid.UUID("6f1c2a7e-3b9d-4c51-9a0e-5d2f8b7c1e40")


def event_id_for(camera_id: str, capture_time_ns: int, seq: int) -> str:
    """Deterministic event UUID for the frame that opened an incident."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{camera_id}/{capture_time_ns}/{seq}"))


@dataclass(frozen=True)
class GatingParams:
    """Thresholds of the gate and of incident grouping."""

    tau_g: float = 0.25
    # DAT 4.2.1's routing threshold: events of frames with s_t >= tau_high skip the MLLM.
    tau_high: float = 0.8
    target_classes: frozenset[str] | None = frozenset({"accident"})
    severe_classes: frozenset[str] = frozenset({"accident"})
    context_margin: float = 0.25
    iou_threshold: float = 0.3
    cooldown_s: float = 5.0
    motion_gate: bool = True
    motion_threshold: float = 2.0
    motion_max_skip: int = 30
    motion_local_threshold: float = 8.0
    motion_max_skip_s: float = 1.0
    jpeg_quality: int = 85


@dataclass(frozen=True)
class GatedEvent:
    """An event written for the frame that opened an incident."""

    event_id: str
    camera_id: str
    frame_seq: int
    pts_s: float
    capture_time_ns: int
    created_time_ns: int
    structured: StructuredEvent
    gate: GateResult
    detections: tuple[Detection, ...]
    evidence: EncodedEvidence
    stage_ms: dict[str, float]
    context: SceneContext | None = None
    # "mllm" (tau_g <= s_t < tau_high: the configured structurer) or "confident" (s_t >= tau_high).
    route: str = "mllm"


@dataclass(frozen=True)
class FrameInput:
    """One decoded frame of one camera, as the gater takes it."""

    camera_id: str
    seq: int
    pts_s: float
    capture_time_ns: int
    image: np.ndarray


@dataclass
class FrameOutcome:
    """What happened to one frame."""

    detector_ran: bool
    gate: GateResult
    event: GatedEvent | None = None
    invalid_model_output: str | None = None
    stage_ms: dict[str, float] = field(default_factory=dict)
    # Which structurer wrote (or failed to write) this frame's event: "mllm", "confident" or None.
    route: str | None = None


class FrameGater:
    """DAT's small-large cascade for a set of cameras.

    Per frame: the motion pre-gate, then the gate detector (eq. 1-2). A gated frame that opens an
    incident also runs the context detector (COCO: the vehicles and people around it) on the same
    decoded image, once, and is routed by its trigger score: s_t >= tau_high is a confident detection
    whose event `confident_structurer` writes from the detectors' priors at once; tau_g <= s_t < tau_high
    goes to `structurer` (the MLLM when one is configured).
    """

    def __init__(
        self,
        detector: Detector,
        structurer: EventStructurer,
        params: GatingParams,
        *,
        context_detector: Detector | None = None,
        confident_structurer: EventStructurer | None = None,
    ) -> None:
        self.detector = detector
        self.structurer = structurer
        self.context_detector = context_detector
        self.confident_structurer = confident_structurer or structurer
        self.params = params
        self._grouper = IncidentGrouper(params.iou_threshold, params.cooldown_s)
        self._motion: dict[str, MotionGate] = {}
        self._last: dict[str, GateResult] = {}

    def _motion_gate(self, camera_id: str) -> MotionGate:
        if camera_id not in self._motion:
            p = self.params
            self._motion[camera_id] = MotionGate(
                p.motion_threshold,
                max_skip=p.motion_max_skip,
                local_threshold=p.motion_local_threshold,
                max_skip_s=p.motion_max_skip_s,
            )
        return self._motion[camera_id]

    def incident_state(self, camera_id: str) -> list[dict[str, Any]]:
        """The open incidents of `camera_id` as plain data (see IncidentGrouper.snapshot)."""
        return self._grouper.snapshot(camera_id)

    def restore_incidents(self, camera_id: str, incidents: Sequence[dict[str, Any]]) -> None:
        """Put back what :meth:`incident_state` returned (after a restart, or to undo a failed batch)."""
        self._grouper.restore(camera_id, incidents)

    def detect_and_gate(self, image: np.ndarray, tau_g: float | None = None) -> tuple[list[Detection], GateResult]:
        """Run the detector and the gate on one image (the gRPC Detect path; no state)."""
        dets = self.detector.detect(image)
        return dets, gate(dets, tau_g or self.params.tau_g, self.params.target_classes)

    def context_of(self, image: np.ndarray, valid: Sequence[Detection]) -> SceneContext | None:
        """The context detector's view of the incident D+_t on this image (None without a context detector)."""
        if self.context_detector is None or not valid:
            return None
        return scene_context(valid, self.context_detector.detect(image), self.params.context_margin)

    def process(self, camera_id: str, seq: int, pts_s: float, capture_time_ns: int, image: np.ndarray) -> FrameOutcome:
        """Gate one frame; write an event when it opens an incident (or retries one whose output was invalid)."""
        return self.process_batch([FrameInput(camera_id, seq, pts_s, capture_time_ns, image)])[0]

    def process_batch(self, frames: Sequence[FrameInput]) -> list[FrameOutcome]:
        """Gate frames of different cameras together: one detector call for every frame the motion gate passes.

        At most one frame per camera: a camera's next frame depends on this one's detections
        (the motion pre-gate reuses them, incidents group on them).
        """
        cameras = [f.camera_id for f in frames]
        if len(set(cameras)) != len(cameras):
            raise ValueError(f"a batch takes one frame per camera, got cameras {cameras}")
        stage_ms: list[dict[str, float]] = [{} for _ in frames]
        run: list[bool] = []
        for f, ms in zip(frames, stage_ms, strict=True):
            t0 = time.perf_counter()
            run_detector = True
            if self.params.motion_gate:
                changed = self._motion_gate(f.camera_id).check(f.image, f.pts_s).changed
                run_detector = changed or f.camera_id not in self._last
                ms["motion"] = (time.perf_counter() - t0) * 1e3
            run.append(run_detector)
        todo = [i for i, r in enumerate(run) if r]
        if todo:
            t1 = time.perf_counter()
            batch_dets = self.detector.detect_batch([frames[i].image for i in todo])
            # The batch's time, shared out: what each frame cost the detector.
            share_ms = (time.perf_counter() - t1) * 1e3 / len(todo)
            for i, dets in zip(todo, batch_dets, strict=True):
                stage_ms[i]["detect"] = share_ms
                self._last[frames[i].camera_id] = gate(dets, self.params.tau_g, self.params.target_classes)
        return [
            # Unchanged scene: the previous detections still describe it.
            self._finish(f, r, self._last[f.camera_id], ms)
            for f, r, ms in zip(frames, run, stage_ms, strict=True)
        ]

    def _finish(self, frame: FrameInput, run_detector: bool, g: GateResult, stage_ms: dict[str, float]) -> FrameOutcome:
        """Incident grouping and, for a frame that opens an incident, its evidence, context and event."""
        camera_id, seq, pts_s, capture_time_ns, image = (
            frame.camera_id,
            frame.seq,
            frame.pts_s,
            frame.capture_time_ns,
            frame.image,
        )
        outcome = FrameOutcome(detector_ran=run_detector, gate=g, stage_ms=stage_ms)
        if not g.gated:
            self._grouper.expire(camera_id, pts_s)
            return outcome
        assignment = self._grouper.assign(camera_id, pts_s, g.valid)
        incident = assignment.incident
        if incident.event_id:
            return outcome
        t2 = time.perf_counter()
        evidence = make_evidence(image, g.valid, self.params.severe_classes, self.params.jpeg_quality)
        stage_ms["evidence"] = (time.perf_counter() - t2) * 1e3
        h, w = image.shape[:2]
        context = None
        if self.context_detector is not None:
            t_ctx = time.perf_counter()
            context = self.context_of(image, g.valid)
            stage_ms["context"] = (time.perf_counter() - t_ctx) * 1e3
        route = "confident" if g.trigger_score >= self.params.tau_high else "mllm"
        structurer = self.confident_structurer if route == "confident" else self.structurer
        outcome.route = route
        t3 = time.perf_counter()
        try:
            structured = structurer.structure(
                StructuringRequest(
                    boxed_image=evidence.boxed_image,
                    detections=g.valid,
                    width=w,
                    height=h,
                    camera_id=camera_id,
                    context=context,
                )
            )
        except InvalidModelOutput as exc:
            # The incident stays without an event, so its next frame tries again.
            stage_ms["structure"] = (time.perf_counter() - t3) * 1e3
            outcome.invalid_model_output = str(exc)
            log.warning("invalid model output for %s frame %d: %s", camera_id, seq, exc)
            return outcome
        stage_ms["structure"] = (time.perf_counter() - t3) * 1e3
        incident.event_id = event_id_for(camera_id, capture_time_ns, seq)
        outcome.event = GatedEvent(
            event_id=incident.event_id,
            camera_id=camera_id,
            frame_seq=seq,
            pts_s=pts_s,
            capture_time_ns=capture_time_ns,
            created_time_ns=time.time_ns(),
            structured=structured,
            gate=g,
            detections=g.valid,
            evidence=evidence,
            stage_ms=stage_ms,
            context=context,
            route=route,
        )
        return outcome


def parse_classes(value: Collection[str] | str | None) -> frozenset[str] | None:
    """Settings accept a comma-separated string or a list; '*' or empty means all classes."""
    if value is None:
        return None
    items = [s.strip() for s in (value.split(",") if isinstance(value, str) else value) if s.strip()]
    return None if not items or items == ["*"] else frozenset(items)
