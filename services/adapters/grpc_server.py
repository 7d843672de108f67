"""gRPC transport of the adapter registry: Publish (client stream), Fetch (server stream), List."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import grpc

from services.adapters.registry import AdapterRegistry, UnknownBundle, VersionConflict
from services.common.grpc_runtime import ServerSecurity, abort
from services.common.grpc_runtime import create_server as _create_server
from services.models.adapter_bundle import BadBundle
from vigil.adapter.v1 import adapter_pb2, adapter_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = adapter_pb2.DESCRIPTOR.services_by_name["AdapterRegistry"].full_name

# Called with each manifest once stored; raises when it could not be announced.
Announce = Callable[[adapter_pb2.AdapterManifest], None]


class AdapterRegistryServicer(adapter_pb2_grpc.AdapterRegistryServicer):
    """Stores what is published, announces it, and serves the bytes to edges."""

    def __init__(self, registry: AdapterRegistry, announce: Announce, max_bundle_bytes: int, chunk_bytes: int) -> None:
        self._registry = registry
        self._announce = announce
        self._max_bytes = max_bundle_bytes
        self._chunk = chunk_bytes

    def Publish(
        self, request_iterator: Iterator[adapter_pb2.PublishChunk], context: grpc.ServicerContext
    ) -> adapter_pb2.AdapterManifest:
        """Header first, then the bundle's bytes; replies once the bundle is stored and announced."""
        version = ""
        data = bytearray()
        for i, chunk in enumerate(request_iterator):
            part = chunk.WhichOneof("part")
            if i == 0:
                if part != "header" or not chunk.header.version:
                    abort(context, grpc.StatusCode.INVALID_ARGUMENT, "send a header with the version first")
                version = chunk.header.version
            elif part != "data":
                abort(context, grpc.StatusCode.INVALID_ARGUMENT, "only one header, before the data")
            else:
                data += chunk.data
                if len(data) > self._max_bytes:
                    abort(
                        context,
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"bundle is over this registry's {self._max_bytes}-byte limit",
                    )
        if not version:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "empty stream: send a header, then the bundle")
        try:
            manifest, _ = self._registry.publish(version, bytes(data))
        except BadBundle as exc:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"not a usable adapter bundle: {exc}")
        except VersionConflict as exc:
            abort(context, grpc.StatusCode.ALREADY_EXISTS, str(exc))
        try:
            # Announced again when the same bytes are published again: a retry after a lost announce.
            self._announce(manifest)
        except Exception as exc:  # any bus failure: the bundle is stored, the publisher retries
            log.error("adapter %s stored but not announced: %s", version, exc)
            abort(context, grpc.StatusCode.UNAVAILABLE, f"stored, but the adapters topic is unreachable: {exc}; retry")
        return manifest

    def Fetch(
        self, request: adapter_pb2.FetchRequest, context: grpc.ServicerContext
    ) -> Iterator[adapter_pb2.BundleChunk]:
        """The bundle's bytes from `offset` in chunks."""
        try:
            path = self._registry.bundle_path(request.sha256)
        except UnknownBundle as exc:
            abort(context, grpc.StatusCode.NOT_FOUND, str(exc.args[0]))
        size = path.stat().st_size
        if request.offset > size:
            abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"offset {request.offset} is past the bundle's {size} bytes"
            )
        offset = request.offset
        with path.open("rb") as f:
            f.seek(offset)
            while offset < size and context.is_active():
                data = f.read(self._chunk)
                yield adapter_pb2.BundleChunk(offset=offset, data=data)
                offset += len(data)

    def List(self, request: adapter_pb2.ListRequest, context: grpc.ServicerContext) -> adapter_pb2.ListResponse:
        """Every published manifest, oldest first."""
        return adapter_pb2.ListResponse(manifests=self._registry.list())


def create_server(
    address: str, servicer: AdapterRegistryServicer, chunk_bytes: int, security: ServerSecurity | None = None
) -> tuple[grpc.Server, int, object]:
    """The registry's gRPC server (not started), with health and reflection."""
    return _create_server(
        address,
        lambda s: adapter_pb2_grpc.add_AdapterRegistryServicer_to_server(servicer, s),
        [SERVICE_NAME],
        max_message_bytes=max(16 * 1024 * 1024, 2 * chunk_bytes),
        security=security,
    )
