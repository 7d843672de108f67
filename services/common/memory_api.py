"""The edge memory's Retrieve contract: what `memory` serves and `reasoning` (or the CLI) calls.

Both sides share the request/response protos (vigil.memory.v1) and these typed errors, so a
caller handles a bad question, an empty range or an unreachable memory the same way whether
the memory is in this process (`services.memory.local.LocalMemory`) or across the WAN
(`services.reasoning.reasoner.GrpcMemory`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from enum import Enum
from typing import NoReturn

import grpc

from vigil.memory.v1 import memory_pb2


class RetrieveInvalid(ValueError):
    """The request cannot be served as asked (empty question, inverted range, bad parameter)."""


class RetrieveNotFound(LookupError):
    """Nothing to retrieve: an unknown camera, or no memory within the range."""


class MemoryUnavailable(RuntimeError):
    """The edge memory could not be reached or did not answer in time."""


class Mode(Enum):
    """How index frames are chosen; the one mapping between these names and vigil.memory.v1.RetrievalMode."""

    AKR = "akr"
    SAMPLE = "sample"
    TOP_K = "top-k"

    @property
    def proto(self) -> memory_pb2.RetrievalMode:
        """The proto enum value."""
        return _TO_PROTO[self]

    @property
    def label(self) -> str:
        """How a person reads it: AKR, sample, top-K."""
        return {Mode.AKR: "AKR", Mode.SAMPLE: "sample", Mode.TOP_K: "top-K"}[self]

    @classmethod
    def from_proto(cls, value: int) -> Mode:
        """The mode a request asks for (unspecified = AKR); RetrieveInvalid for a value this build doesn't know."""
        if value == memory_pb2.RETRIEVAL_MODE_UNSPECIFIED:
            return cls.AKR
        for mode, proto in _TO_PROTO.items():
            if proto == value:
                return mode
        raise RetrieveInvalid(f"unknown retrieval mode {value}; use AKR, SAMPLE or TOP_K")


_TO_PROTO = {
    Mode.AKR: memory_pb2.RETRIEVAL_MODE_AKR,
    Mode.SAMPLE: memory_pb2.RETRIEVAL_MODE_SAMPLE,
    Mode.TOP_K: memory_pb2.RETRIEVAL_MODE_TOP_K,
}


def clipped(text: str, limit: int = 64) -> str:
    """`text` quoted for a message, cut to `limit` characters: an error never echoes unbounded input."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def check_question(text: str, max_chars: int) -> str:
    """The stripped question; RetrieveInvalid when it is empty or too long."""
    question = text.strip()
    if not question:
        raise RetrieveInvalid("the question is empty: ask something, e.g. 'when did a person fall?'")
    if len(question) > max_chars:
        raise RetrieveInvalid(f"the question is {len(question)} characters; the limit is {max_chars}")
    return question


class MemorySource(ABC):
    """Where keyframes come from."""

    @abstractmethod
    def retrieve(
        self, request: memory_pb2.RetrieveRequest, timeout_s: float | None = None
    ) -> memory_pb2.RetrieveResponse:
        """Retrieve within `timeout_s` (None: the source's own); raises RetrieveInvalid, RetrieveNotFound or
        MemoryUnavailable."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def raise_for_status(error: grpc.RpcError, where: str) -> NoReturn:
    """A failed Retrieve or Ask as the typed error callers handle: bad question, nothing found, or unavailable."""
    code, detail = error.code(), error.details()  # type: ignore[attr-defined]
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        raise RetrieveInvalid(detail) from error
    if code == grpc.StatusCode.NOT_FOUND:
        raise RetrieveNotFound(detail) from error
    raise MemoryUnavailable(f"{where}: {code.name}: {detail}") from error
