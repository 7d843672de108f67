"""gRPC transport of gating: proto -> FrameGater.detect_and_gate -> proto, errors mapped once here."""

from __future__ import annotations

import logging
import time

import grpc

from services.common.grpc_runtime import CallLimit, ServerSecurity, abort, method_path
from services.common.grpc_runtime import create_server as _create_server
from services.common.images import MAX_IMAGE_PIXELS
from services.gating.adapters import AdapterManager, NothingToRollBack
from services.gating.consumer import decode_image
from services.gating.convert import detection_to_proto
from services.gating.pipeline import FrameGater
from services.models.detectors.base import DetectorError
from services.models.triton import TritonDeadlineExceeded, TritonModelNotReady, TritonUnavailable
from vigil.adapter.v1 import adapter_pb2, adapter_pb2_grpc
from vigil.detection.v1 import detection_pb2, detection_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = detection_pb2.DESCRIPTOR.services_by_name["GatingService"].full_name
ADAPTER_SERVICE_NAME = adapter_pb2.DESCRIPTOR.services_by_name["AdapterControl"].full_name


class GatingServicer(detection_pb2_grpc.GatingServiceServicer):
    """Detect: one image in, D_t, s_t, g_t and D+_t out."""

    def __init__(self, gater: FrameGater, max_image_bytes: int, max_image_pixels: int) -> None:
        self._gater = gater
        self._max_bytes = max_image_bytes
        self._max_pixels = max_image_pixels

    def Detect(
        self, request: detection_pb2.DetectRequest, context: grpc.ServicerContext
    ) -> detection_pb2.DetectResponse:
        """Validate the request, run the detector and the gate."""
        if not request.image:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "image is empty: send JPEG or PNG bytes in `image`")
        if len(request.image) > self._max_bytes:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"image is {len(request.image)} bytes, over the {self._max_bytes}-byte limit: "
                "downscale or re-encode it",
            )
        if request.tau_g and not 0.0 < request.tau_g <= 1.0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"tau_g must be in (0, 1], got {request.tau_g}")
        try:
            image = decode_image(request.image, self._max_pixels)
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"cannot decode image: {exc}")
        t0 = time.perf_counter()
        try:
            dets, g = self._gater.detect_and_gate(image, request.tau_g or None)
        except DetectorError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (TritonUnavailable, TritonModelNotReady) as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"detector backend unavailable: {exc}")
        except TritonDeadlineExceeded as exc:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"detector backend too slow: {exc}")
        return detection_pb2.DetectResponse(
            detections=[detection_to_proto(d) for d in dets],
            trigger_score=g.trigger_score,
            gated=g.gated,
            valid_detections=[detection_to_proto(d) for d in g.valid],
            tau_g=request.tau_g or self._gater.params.tau_g,
            model=self._gater.detector.name,
            inference_ms=(time.perf_counter() - t0) * 1e3,
        )


class AdapterControlServicer(adapter_pb2_grpc.AdapterControlServicer):
    """Status and Rollback of the structurer's LoRA adapter."""

    def __init__(self, manager: AdapterManager) -> None:
        self._manager = manager

    def Status(
        self, request: adapter_pb2.AdapterStatusRequest, context: grpc.ServicerContext
    ) -> adapter_pb2.AdapterStatus:
        """The live adapter and the rollback target."""
        return self._manager.status()

    def Rollback(
        self, request: adapter_pb2.RollbackRequest, context: grpc.ServicerContext
    ) -> adapter_pb2.AdapterStatus:
        """Back to the previous adapter, between two events."""
        try:
            self._manager.rollback()
        except NothingToRollBack as exc:
            abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return self._manager.status()


def create_server(
    address: str,
    gater: FrameGater,
    max_image_bytes: int,
    adapters: AdapterManager | None = None,
    *,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    max_concurrent_detect: int = 4,
    security: ServerSecurity | None = None,
) -> tuple[grpc.Server, int, object]:
    """Gating gRPC server (not started) with health and reflection; port 0 picks a free one.

    With `adapters`, it also serves AdapterControl (`vigil adapter status|rollback`). At most
    `max_concurrent_detect` Detect calls run at once; the next is refused with RESOURCE_EXHAUSTED.
    """
    servicer = GatingServicer(gater, max_image_bytes, max_image_pixels)

    def register(server: grpc.Server) -> None:
        detection_pb2_grpc.add_GatingServiceServicer_to_server(servicer, server)
        if adapters is not None:
            adapter_pb2_grpc.add_AdapterControlServicer_to_server(AdapterControlServicer(adapters), server)

    return _create_server(
        address,
        register,
        [SERVICE_NAME, *([ADAPTER_SERVICE_NAME] if adapters is not None else [])],
        # Room above the limit so an oversized image reaches Detect and gets a clear INVALID_ARGUMENT.
        max_message_bytes=max(2 * max_image_bytes, 16 * 1024 * 1024),
        call_limits={
            method_path(SERVICE_NAME, "Detect"): CallLimit(max_concurrent_detect, "gating.max_concurrent_detect")
        },
        security=security,
    )
