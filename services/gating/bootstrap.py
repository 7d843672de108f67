"""Composition root of gating: the only place that builds its detectors, structurers, consumer and server."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from functools import partial

from services.common.auth import CredentialsError
from services.common.bus import Bus, Consumer, Message, PoisonMessage
from services.common.bus.factory import make_bus
from services.common.grpc_runtime import ServerSecurity, client_security, server_security
from services.common.metrics import LatencyRecorder
from services.common.runtime import GrpcEndpoint, Loop, Stage, StageError
from services.common.signing import signer_from_config
from services.gating import metrics
from services.gating.adapters import AdapterManager, GrpcBundleFetcher, ManifestHandler
from services.gating.checkpoint import IncidentStore
from services.gating.config import AdapterUpdatesConfig, GatingConfig, GatingSettings
from services.gating.consumer import DecodedFrame, FrameHandler
from services.gating.grpc_server import create_server
from services.gating.pipeline import FrameGater, GatingParams, parse_classes
from services.gating.scheduler import FairQueues
from services.models.detectors import build_detector
from services.models.detectors.base import Detector, DetectorError
from services.models.structurers.base import AdaptableStructurer, DetectorPriorStructurer, EventStructurer
from services.models.structurers.config import QwenVLConfig, TritonVLMConfig

log = logging.getLogger(__name__)


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
            # Adapters from the cloud are swapped in while it runs: keep the LoRA weights unmerged.
            swappable=config.adapters is not None,
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


def build_adapter_manager(config: AdapterUpdatesConfig, structurer: EventStructurer) -> AdapterManager:
    """The adapter store and swapper over the running structurer; StageError when it takes no adapter."""
    if not isinstance(structurer, AdaptableStructurer):
        raise StageError(
            f"gating.adapters is set, but the {structurer.producer.kind} structurer takes no LoRA adapter: "
            "use the qwen2.5-vl structurer or unset gating.adapters"
        )
    fetch = GrpcBundleFetcher(
        config.registry,
        attempts=config.fetch_attempts,
        timeout_s=config.fetch_timeout_s,
        security=client_security(config.registry_security, "gating.adapters.registry_security"),
    )
    try:
        return AdapterManager(structurer, config.dir, fetch)
    except (OSError, ValueError) as exc:
        raise StageError(f"cannot restore the adapters in {config.dir}: {exc}") from exc


def _gate_loop(
    queues: FairQueues[DecodedFrame],
    handler: FrameHandler,
    consumer: Consumer,
    settings: GatingSettings,
    done: Callable[[Message], None],
    stop: threading.Event,
) -> None:
    """Gate fair batches until stopped; a batch that fails is gated frame by frame with the consumer's own
    retry and dead-letter policy, so one bad frame never stalls the other cameras."""
    while not stop.is_set():
        batch = queues.take(settings.gating.max_batch, timeout_s=0.2)
        if not batch:
            continue
        metrics.BATCH_FRAMES.observe(len(batch))
        try:
            handler.handle(batch)
        except Exception:
            log.exception("a batch of %d frames failed; gating them one by one", len(batch))
            for decoded in batch:
                if not consumer.retry(decoded.msg, partial(handler.handle, [decoded]), stop):
                    # Stopped while still failing: unacknowledged, the frames go to the group's next consumer.
                    return
        for decoded in batch:
            consumer.ack(decoded.msg)
            done(decoded.msg)


class GatingStage(Stage):
    """Frames topic -> gate -> events topic, and the Detect RPC over the same gater."""

    def __init__(
        self,
        settings: GatingSettings,
        bus: Bus,
        gater: FrameGater,
        handler: FrameHandler,
        on_handled: Callable[[Message], None] | None = None,
        adapters: AdapterManager | None = None,
        security: ServerSecurity | None = None,
    ) -> None:
        self.gater = gater
        self.handler = handler
        self.adapters = adapters
        topics = settings.topics

        dead_letter = topics.dead_letter(topics.frames)
        self.queues: FairQueues[DecodedFrame] | None = None
        loops: list[tuple[str, Loop]] = []
        if settings.gating.max_batch == 1:

            def consume(msg: Message) -> None:
                try:
                    handler(msg)
                finally:
                    # Handled or given up on (a poison frame is dead-lettered): either way this frame is done.
                    if on_handled is not None:
                        on_handled(msg)

            consumer = bus.consumer(
                [topics.frames], settings.gating.consumer_group, consume, dead_letter_topic=dead_letter
            )
        else:
            # The consumer only decodes and queues; the gate loop takes fair batches across cameras and
            # acknowledges each frame once gated, so the committed offset never passes an ungated frame.
            queues = self.queues = FairQueues[DecodedFrame](settings.gating.live_buffer)
            done = on_handled or (lambda _msg: None)

            def enqueue(msg: Message) -> None:
                try:
                    decoded = handler.decode(msg)
                except PoisonMessage:
                    done(msg)
                    raise
                dropped = queues.put(decoded.frame.camera_id, decoded, live=decoded.frame.live)
                if dropped is not None:
                    handler.camera(dropped.frame.camera_id).dropped += 1
                    metrics.DROPPED.inc()
                    consumer.ack(dropped.msg)
                    done(dropped.msg)

            consumer = bus.consumer(
                [topics.frames], settings.gating.consumer_group, enqueue, dead_letter_topic=dead_letter, manual_ack=True
            )
            loops.append(("gate", partial(_gate_loop, queues, handler, consumer, settings, done)))

        consumers: list[Consumer] = [consumer]
        closers: list[Callable[[], object]] = []
        description = f"detector {gater.detector.name}, structurer {gater.structurer.producer.kind}"
        updates = settings.gating.adapters
        if adapters is not None and updates is not None:
            cloud = make_bus(updates.cloud_bus, client_id="vigil-gating-adapters") if updates.cloud_bus else bus
            if cloud is not bus:
                closers.append(cloud.close)
            consumers.append(
                cloud.consumer(
                    [topics.adapters],
                    updates.consumer_group or f"vigil-gating-adapters-{socket.gethostname()}",
                    ManifestHandler(adapters),
                    dead_letter_topic=topics.dead_letter(topics.adapters),
                )
            )
            description += f", adapter {adapters.state.live or '(none)'} (updates from {topics.adapters})"

        def serve() -> GrpcEndpoint:
            cfg = settings.gating
            return GrpcEndpoint(
                *create_server(
                    settings.grpc_address,
                    gater,
                    cfg.max_image_bytes,
                    adapters,
                    max_image_pixels=cfg.max_image_pixels,
                    max_concurrent_detect=cfg.max_concurrent_detect,
                    security=security,
                )
            )

        super().__init__(
            "gating", consumers=consumers, loops=loops, serve=serve, closers=closers, description=description
        )


def build(
    settings: GatingSettings,
    bus: Bus | None,
    *,
    gater: FrameGater | None = None,
    latency: LatencyRecorder | None = None,
    on_handled: Callable[[Message], None] | None = None,
) -> GatingStage:
    """The gating stage from settings; `gater` may be built by the caller, `on_handled` sees every frame message.

    StageError when a detector cannot be loaded (missing weights, a model of the wrong task).
    """
    if bus is None:
        raise ValueError("gating needs a bus")
    security = server_security(settings.grpc_security)
    if gater is None:
        try:
            gater = build_gater(settings.gating)
        except DetectorError as exc:
            raise StageError(str(exc)) from exc
    adapters = None
    if settings.gating.adapters is not None:
        adapters = build_adapter_manager(settings.gating.adapters, gater.structurer)
    try:
        signer = signer_from_config(settings.signing)
    except CredentialsError as exc:
        raise StageError(str(exc)) from exc
    store = None
    if settings.gating.state_dir is not None:
        try:
            store = IncidentStore(settings.gating.state_dir)
        except OSError as exc:
            raise StageError(f"cannot use gating.state_dir {settings.gating.state_dir}: {exc}") from exc
    handler = FrameHandler(gater, bus, settings.topics.events, latency, signer, store)
    return GatingStage(settings, bus, gater, handler, on_handled, adapters, security)
