"""gRPC transport of the memory: proto <-> Retriever, errors mapped to status codes once, here."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import grpc

from services.common.grpc_runtime import CallLimit, ServerSecurity, abort, method_path
from services.common.grpc_runtime import create_server as _create_server
from services.common.memory_api import Mode, RetrieveInvalid, RetrieveNotFound
from services.memory import metrics
from services.memory.retriever import RetrieveQuery, Retriever, RetrieveResult
from services.memory.store import StoreError, StoreUnavailable
from vigil.memory.v1 import memory_pb2, memory_pb2_grpc

if TYPE_CHECKING:
    # The composition root builds the Memory and imports this module; at run time the server only uses it.
    from services.memory.bootstrap import Memory

log = logging.getLogger(__name__)

SERVICE_NAME = memory_pb2.DESCRIPTOR.services_by_name["MemoryService"].full_name


def request_to_query(req: memory_pb2.RetrieveRequest) -> RetrieveQuery:
    """Proto -> query; RetrieveInvalid for an unknown mode."""
    return RetrieveQuery(
        question=req.question,
        camera_id=req.camera_id or None,
        since_s=req.range.since_s if req.range.HasField("since_s") else None,
        until_s=req.range.until_s if req.range.HasField("until_s") else None,
        mode=Mode.from_proto(req.mode),
        max_frames=req.max_frames,
        temperature=req.temperature,
        theta=req.theta,
        seed=req.seed,
        with_images=not req.omit_images,
    )


def result_to_response(result: RetrieveResult) -> memory_pb2.RetrieveResponse:
    """Result -> proto."""
    return memory_pb2.RetrieveResponse(
        keyframes=[
            memory_pb2.Keyframe(
                camera_id=f.camera_id,
                time_s=f.time_s,
                capture_time_ns=f.capture_time_ns,
                jpeg=f.jpeg,
                index_point_id=f.hit.point_id,
                scene_id=f.hit.payload.scene_id,
                cluster_id=f.hit.payload.cluster_id,
                similarity=f.hit.score,
                probability=f.probability,
                aux_text=f.hit.payload.aux_text,
                from_index_frame=f.from_index_frame,
                cluster_start_s=f.hit.payload.start_s,
                cluster_end_s=f.hit.payload.end_s,
            )
            for f in result.frames
        ],
        mode=result.mode.proto,
        index_frames_in_range=result.in_range,
        clusters_chosen=result.clusters_chosen,
        draws=result.draws,
        covered_probability=result.covered_probability,
        n_min=result.n_min,
        n_max=result.n_max,
        temperature=result.temperature,
        theta=result.theta,
        seed=result.seed,
        embedder=result.embedder,
        embedder_limitations=result.limitations,
        frames_expired=result.frames_expired,
        retrieve_ms=result.retrieve_ms,
    )


def retrieve(retriever: Retriever, req: memory_pb2.RetrieveRequest) -> memory_pb2.RetrieveResponse:
    """The whole RPC without the transport (the embedded `vigil ask` calls this directly)."""
    return result_to_response(retriever.retrieve(request_to_query(req)))


def describe(memory: Memory) -> memory_pb2.DescribeResponse:
    """What the memory holds, per camera."""
    out = memory_pb2.DescribeResponse(embedder=memory.embedder.name, store=memory.config.store.type)
    files, size = memory.frames.raw_usage()
    out.raw_frames, out.raw_bytes = files, size
    with memory.retriever.store_lock:
        # O(cameras): the score index keeps each camera's count and span as points arrive.
        spans = memory.store.camera_spans(memory.retriever.vector)
    for span in spans:
        out.cameras.append(
            memory_pb2.CameraMemory(
                camera_id=span.camera_id,
                index_frames=span.index_frames,
                earliest_s=span.earliest_s,
                latest_s=span.latest_s,
            )
        )
    return out


class MemoryServicer(memory_pb2_grpc.MemoryServiceServicer):
    """Retrieve and Describe."""

    def __init__(self, memory: Memory) -> None:
        self._memory = memory

    def Retrieve(
        self, request: memory_pb2.RetrieveRequest, context: grpc.ServicerContext
    ) -> memory_pb2.RetrieveResponse:
        """Keyframes for a question; INVALID_ARGUMENT / NOT_FOUND / UNAVAILABLE with a message to act on."""
        t0 = time.perf_counter()
        code: grpc.StatusCode | None = None
        message = ""
        try:
            response = retrieve(self._memory.retriever, request)
        except RetrieveInvalid as e:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, str(e)
        except RetrieveNotFound as e:
            code, message = grpc.StatusCode.NOT_FOUND, str(e)
        except StoreUnavailable as e:
            code, message = grpc.StatusCode.UNAVAILABLE, f"the vector store is unavailable: {e}"
        except StoreError as e:
            code, message = grpc.StatusCode.INTERNAL, f"the vector store failed: {e}"
        if code is not None:
            metrics.RETRIEVE_ERRORS.labels(code.name).inc()
            abort(context, code, message)
        mode = Mode.from_proto(request.mode).value
        metrics.RETRIEVE_SECONDS.labels(mode).observe(time.perf_counter() - t0)
        metrics.RETRIEVE_FRAMES.labels(mode).observe(len(response.keyframes))
        return response

    def Describe(
        self, request: memory_pb2.DescribeRequest, context: grpc.ServicerContext
    ) -> memory_pb2.DescribeResponse:
        """Cameras, index points, raw frames."""
        try:
            return describe(self._memory)
        except StoreUnavailable as e:
            abort(context, grpc.StatusCode.UNAVAILABLE, f"the vector store is unavailable: {e}")
        except StoreError as e:
            abort(context, grpc.StatusCode.INTERNAL, f"the vector store failed: {e}")


def create_server(
    address: str, memory: Memory, security: ServerSecurity | None = None
) -> tuple[grpc.Server, int, object]:
    """Memory gRPC server (not started) with health and reflection; port 0 picks a free one."""
    servicer = MemoryServicer(memory)
    return _create_server(
        address,
        lambda s: memory_pb2_grpc.add_MemoryServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
        # Keyframes travel as JPEGs in one response: room for N_max frames of a large camera.
        max_message_bytes=64 * 1024 * 1024,
        call_limits={
            method_path(SERVICE_NAME, "Retrieve"): CallLimit(
                memory.config.max_concurrent_retrieve, "memory.max_concurrent_retrieve"
            )
        },
        security=security,
    )
