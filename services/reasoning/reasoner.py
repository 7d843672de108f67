"""Ask: question -> the edge memory's keyframes -> the answerer -> an answer with the times it used.

The memory is reached through a `MemorySource` (services/common/memory_api.py): `GrpcMemory`
here (the cloud service, across the WAN) or the memory's own `LocalMemory` (the embedded
`vigil ask`), which the composition root passes in.
"""

from __future__ import annotations

import logging
import time

import cv2
import grpc
import numpy as np

from services.common.grpc_runtime import ClientSecurity, open_channel
from services.common.memory_api import (
    MemorySource,
    MemoryUnavailable,
    RetrieveInvalid,
    RetrieveNotFound,
    check_question,
    raise_for_status,
)
from services.models.answerers.base import Answerer, AnswerError, EvidenceFrame
from vigil.memory.v1 import memory_pb2, memory_pb2_grpc
from vigil.reasoning.v1 import reasoning_pb2

log = logging.getLogger(__name__)


class GrpcMemory(MemorySource):
    """The edge memory service over gRPC, with a deadline per call."""

    def __init__(self, address: str, timeout_s: float, security: ClientSecurity | None = None) -> None:
        self.address = address
        self._timeout_s = timeout_s
        self._channel = open_channel(address, security, [("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        self._stub = memory_pb2_grpc.MemoryServiceStub(self._channel)

    def retrieve(
        self, request: memory_pb2.RetrieveRequest, timeout_s: float | None = None
    ) -> memory_pb2.RetrieveResponse:
        """Retrieve over gRPC within the configured deadline (or the caller's, if sooner); typed errors."""
        timeout = self._timeout_s if timeout_s is None else max(0.0, min(self._timeout_s, timeout_s))
        try:
            response: memory_pb2.RetrieveResponse = self._stub.Retrieve(request, timeout=timeout)
            return response
        except grpc.RpcError as e:
            raise_for_status(e, f"edge memory at {self.address}")

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()


def decode_keyframe(k: memory_pb2.Keyframe) -> EvidenceFrame:
    """A keyframe as the answerer sees it (image None when it came without JPEG bytes)."""
    image = cv2.imdecode(np.frombuffer(k.jpeg, np.uint8), cv2.IMREAD_COLOR) if k.jpeg else None
    return EvidenceFrame(
        camera_id=k.camera_id,
        time_s=k.time_s,
        image=image,
        aux_text=k.aux_text,
        similarity=k.similarity,
        probability=k.probability,
        from_index_frame=k.from_index_frame,
    )


class Reasoner:
    """The Ask use case: validate, retrieve, answer, and say what the user must know."""

    def __init__(self, memory: MemorySource, answerer: Answerer, max_question_chars: int = 2000) -> None:
        self.memory = memory
        self.answerer = answerer
        self.max_question_chars = max_question_chars

    def ask(self, request: reasoning_pb2.AskRequest, timeout_s: float | None = None) -> reasoning_pb2.AskResponse:
        """Answer one question; raises RetrieveInvalid, RetrieveNotFound, MemoryUnavailable or AnswerError.

        `timeout_s`: what is left of the caller's deadline; the Retrieve made for it gets no longer.
        """
        t0 = time.perf_counter()
        question = check_question(request.question, self.max_question_chars)
        retrieval = self.memory.retrieve(
            memory_pb2.RetrieveRequest(
                question=question,
                camera_id=request.camera_id,
                range=request.range,
                mode=request.mode,
                max_frames=request.max_frames,
                seed=request.seed,
            ),
            timeout_s,
        )
        if not retrieval.keyframes:
            raise RetrieveNotFound("the memory returned no keyframes for this question")
        frames = [decode_keyframe(k) for k in retrieval.keyframes]
        undecodable = sum(1 for k, f in zip(retrieval.keyframes, frames, strict=True) if k.jpeg and f.image is None)
        answer = self.answerer.answer(question, frames)
        notes = list(answer.notes)
        notes.append(f"retrieval by {retrieval.embedder}: {retrieval.embedder_limitations}")
        if retrieval.frames_expired:
            notes.append(f"{retrieval.frames_expired} raw frame(s) were past retention; their index frames stood in")
        if undecodable:
            notes.append(f"{undecodable} keyframe(s) could not be decoded and were described in text only")
        response = reasoning_pb2.AskResponse(
            answer=answer.text,
            used_times_s=answer.used_times_s,
            vlm_ran=answer.vlm_ran,
            vlm=answer.vlm,
            random_init=answer.random_init,
            notes=notes,
            retrieval=retrieval,
            answer_ms=(time.perf_counter() - t0) * 1e3,
        )
        response.keyframes.extend(retrieval.keyframes)
        if not request.include_images:
            for k in response.keyframes:
                k.jpeg = b""
            for k in response.retrieval.keyframes:
                k.jpeg = b""
        else:
            # The keyframes are in `keyframes`; no need to send them twice.
            for k in response.retrieval.keyframes:
                k.jpeg = b""
        return response


__all__ = [
    "AnswerError",
    "GrpcMemory",
    "MemorySource",
    "MemoryUnavailable",
    "Reasoner",
    "RetrieveInvalid",
    "RetrieveNotFound",
]
