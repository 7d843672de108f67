"""The edge memory's Retrieve contract: what `memory` serves and `reasoning` (or the CLI) calls.

Both sides share the request/response protos (vigil.memory.v1) and these typed errors, so a
caller handles a bad question, an empty range or an unreachable memory the same way whether
the memory is in this process (`services.memory.local.LocalMemory`) or across the WAN
(`services.reasoning.reasoner.GrpcMemory`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NoReturn

import grpc

from vigil.memory.v1 import memory_pb2


class RetrieveInvalid(ValueError):
    """The request cannot be served as asked (empty question, inverted range, bad parameter)."""


class RetrieveNotFound(LookupError):
    """Nothing to retrieve: an unknown camera, or no memory within the range."""


class MemoryUnavailable(RuntimeError):
    """The edge memory could not be reached or did not answer in time."""


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
    def retrieve(self, request: memory_pb2.RetrieveRequest) -> memory_pb2.RetrieveResponse:
        """Retrieve; raises RetrieveInvalid, RetrieveNotFound or MemoryUnavailable."""

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
