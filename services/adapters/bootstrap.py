"""Composition root of the adapter registry: the store, the announcer on the adapters topic, the server."""

from __future__ import annotations

from services.adapters.config import AdaptersSettings
from services.adapters.grpc_server import AdapterRegistryServicer, create_server
from services.adapters.registry import AdapterRegistry
from services.common.bus import Bus
from services.common.grpc_runtime import server_security
from services.common.runtime import GrpcEndpoint, Stage, StageError
from vigil.adapter.v1 import adapter_pb2


def build(settings: AdaptersSettings, bus: Bus | None) -> Stage:
    """The registry stage: serves Publish/Fetch/List and announces each publish on the adapters topic."""
    if bus is None:
        raise ValueError("the adapter registry needs a bus to announce on")
    cfg = settings.adapters
    security = server_security(settings.grpc_security)
    try:
        registry = AdapterRegistry(cfg.dir, cfg.public_address, cfg.max_bundle_bytes)
    except OSError as exc:
        raise StageError(f"cannot open the adapter store {cfg.dir}: {exc}") from exc
    topic = settings.topics.adapters

    def announce(manifest: adapter_pb2.AdapterManifest) -> None:
        # Keyed by base model: one partition per model keeps its versions in publish order.
        bus.publish(
            topic, manifest.SerializeToString(), key=manifest.base_model, headers={"vigil-adapter": manifest.version}
        )
        bus.flush()

    servicer = AdapterRegistryServicer(registry, announce, cfg.max_bundle_bytes, cfg.chunk_bytes)

    def serve() -> GrpcEndpoint:
        return GrpcEndpoint(*create_server(settings.grpc_address, servicer, cfg.chunk_bytes, security))

    return Stage("adapters", serve=serve, description=f"store {cfg.dir}, announcing on {topic}")
