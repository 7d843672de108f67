"""The adapter registry over real gRPC: Publish's refusals, Fetch by digest and offset, List, and a fetch that
survives a link cut in the middle of a bundle (resumed from the last byte received, through a TCP proxy)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from safetensors.numpy import save_file

from services.adapters.bootstrap import build
from services.adapters.config import AdaptersConfig, AdaptersSettings
from services.common.bus.inprocess import InProcessBus
from services.common.runtime import Stage
from services.gating.adapters import GrpcBundleFetcher
from services.models.adapter_bundle import pack, sha256_hex, verify
from tests.fixtures.tcp_proxy import TcpProxy
from tests.unit.test_adapter_bundle import make_adapter
from vigil.adapter.v1 import adapter_pb2, adapter_pb2_grpc

CHUNK = 64 * 1024


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[str, InProcessBus, AdaptersSettings]]:
    bus = InProcessBus()
    settings = AdaptersSettings(
        adapters=AdaptersConfig(dir=tmp_path / "store", public_address="registry.example:50054", chunk_bytes=CHUNK),
        grpc_address="127.0.0.1:0",
    )
    stage: Stage = build(settings, bus)
    stop = threading.Event()
    stage.start(stop)
    assert stage.endpoint is not None
    try:
        yield f"127.0.0.1:{stage.endpoint.port}", bus, settings
    finally:
        stop.set()
        stage.close(grace_s=0.5)


def big_adapter(path: Path, mb: int = 2) -> Path:
    """An adapter with `mb` MB of weights, so a bundle spans many chunks."""
    adapter = make_adapter(path)
    weights = np.random.default_rng(0).standard_normal((mb * 1024 * 256,)).astype(np.float32)
    save_file({"lora_B.weight": weights}, str(adapter / "adapter_model.safetensors"))
    return adapter


def publish(address: str, chunks: list[adapter_pb2.PublishChunk]) -> adapter_pb2.AdapterManifest:
    with grpc.insecure_channel(address) as ch:
        reply: adapter_pb2.AdapterManifest = adapter_pb2_grpc.AdapterRegistryStub(ch).Publish(iter(chunks), timeout=30)
        return reply


def bundle_chunks(version: str, data: bytes) -> list[adapter_pb2.PublishChunk]:
    return [
        adapter_pb2.PublishChunk(header=adapter_pb2.PublishHeader(version=version)),
        *(adapter_pb2.PublishChunk(data=data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)),
    ]


def test_publish_stores_announces_and_lists(registry, tmp_path) -> None:
    address, bus, settings = registry
    data = pack(make_adapter(tmp_path / "a"))
    m = publish(address, bundle_chunks("v1", data))
    assert (m.version, m.base_model, m.sha256, m.size_bytes) == (
        "v1",
        "Qwen2.5-VL-7B-Instruct",
        sha256_hex(data),
        len(data),
    )
    assert m.registry == "registry.example:50054" and m.card == "# card\n"
    announced = bus.messages(settings.topics.adapters)
    assert [adapter_pb2.AdapterManifest.FromString(r.value) for r in announced] == [m]
    assert announced[0].key == b"Qwen2.5-VL-7B-Instruct"
    # The same bytes again (a publisher retrying after a lost reply): the same manifest, announced again.
    assert publish(address, bundle_chunks("v1", data)) == m
    assert len(bus.messages(settings.topics.adapters)) == 2
    with grpc.insecure_channel(address) as ch:
        listing = adapter_pb2_grpc.AdapterRegistryStub(ch).List(adapter_pb2.ListRequest(), timeout=10)
    assert list(listing.manifests) == [m]


@pytest.mark.parametrize(
    ("chunks", "code", "message"),
    [
        ([], grpc.StatusCode.INVALID_ARGUMENT, "empty stream"),
        ([adapter_pb2.PublishChunk(data=b"x")], grpc.StatusCode.INVALID_ARGUMENT, "header with the version first"),
        (bundle_chunks("v1", b"not a tar" * 100), grpc.StatusCode.INVALID_ARGUMENT, "not a usable adapter bundle"),
        (bundle_chunks("../v1", b""), grpc.StatusCode.INVALID_ARGUMENT, "must match"),
    ],
)
def test_publish_refuses_malformed_streams(registry, chunks, code, message) -> None:
    address, bus, settings = registry
    with pytest.raises(grpc.RpcError) as exc:
        publish(address, chunks)
    assert exc.value.code() == code and message in exc.value.details()
    assert bus.messages(settings.topics.adapters) == []


def test_a_version_never_changes_meaning(registry, tmp_path) -> None:
    address, _, _ = registry
    publish(address, bundle_chunks("v1", pack(make_adapter(tmp_path / "a"))))
    with pytest.raises(grpc.RpcError) as exc:
        publish(address, bundle_chunks("v1", pack(make_adapter(tmp_path / "b", card="other"))))
    assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS and "new version" in exc.value.details()


def test_fetch_by_digest_and_offset(registry, tmp_path) -> None:
    address, _, _ = registry
    data = pack(big_adapter(tmp_path / "a", mb=1))
    m = publish(address, bundle_chunks("v1", data))
    with grpc.insecure_channel(address) as ch:
        stub = adapter_pb2_grpc.AdapterRegistryStub(ch)
        tail = list(stub.Fetch(adapter_pb2.FetchRequest(sha256=m.sha256, offset=1000), timeout=10))
        assert tail[0].offset == 1000 and b"".join(c.data for c in tail) == data[1000:]
        assert all(len(c.data) <= CHUNK for c in tail)
        with pytest.raises(grpc.RpcError) as missing:
            list(stub.Fetch(adapter_pb2.FetchRequest(sha256="0" * 64), timeout=10))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as past:
            list(stub.Fetch(adapter_pb2.FetchRequest(sha256=m.sha256, offset=len(data) + 1), timeout=10))
        assert past.value.code() == grpc.StatusCode.INVALID_ARGUMENT


class CutOnce(GrpcBundleFetcher):
    """The real fetcher, whose link (a TCP proxy) is cut once after a few chunks and restored."""

    def __init__(self, proxy: TcpProxy) -> None:
        super().__init__(proxy.address, attempts=5)
        self.proxy = proxy
        self.offsets: list[int] = []

    def _chunks(self, address: str, sha256: str, offset: int) -> Iterator[adapter_pb2.BundleChunk]:
        self.offsets.append(offset)
        for i, chunk in enumerate(super()._chunks(address, sha256, offset)):
            yield chunk
            if len(self.offsets) == 1 and i == 3:
                self.proxy.cut()
                threading.Timer(0.3, self.proxy.restore).start()


def test_a_fetch_resumes_after_the_link_breaks(registry, tmp_path) -> None:
    address, _, _ = registry
    # Several MB: more than gRPC keeps in flight on loopback, so the cut lands mid-bundle.
    data = pack(big_adapter(tmp_path / "a", mb=6))
    m = publish(address, bundle_chunks("v1", data))
    host, port = address.rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        fetch = CutOnce(proxy)
        got = fetch(m)
    verify(got, m.sha256, m.size_bytes)
    assert len(fetch.offsets) >= 2 and fetch.offsets[0] == 0
    assert 0 < fetch.offsets[-1] < len(data), "resumed from where it broke, not from the start"
