"""The memory in this process as a `MemorySource`: the embedded `vigil ask`, same conversion code, no socket."""

from __future__ import annotations

from services.common.memory_api import MemorySource, MemoryUnavailable
from services.memory.grpc_server import retrieve
from services.memory.retriever import Retriever
from services.memory.store import StoreError
from vigil.memory.v1 import memory_pb2


class LocalMemory(MemorySource):
    """Calls the memory's RPC body directly."""

    def __init__(self, retriever: Retriever) -> None:
        self._retriever = retriever

    def retrieve(
        self, request: memory_pb2.RetrieveRequest, timeout_s: float | None = None
    ) -> memory_pb2.RetrieveResponse:
        """Retrieve in process (no deadline to pass on); a failing vector store is MemoryUnavailable, as over gRPC."""
        try:
            return retrieve(self._retriever, request)
        except StoreError as e:
            raise MemoryUnavailable(f"the memory's vector store failed: {e}") from e
