"""The edge's adapter manager: install, refuse, de-duplicate, roll back, restore after a restart.

The structurer is a stand-in that records which adapter is active (this is the manager's logic; the
real swap in Qwen2.5-VL is tested through Tansu in tests/integration/test_adapter_distribution.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.common.bus import Message, PoisonMessage, RetryableError
from services.gating.adapters import AdapterManager, ManifestHandler, NothingToRollBack
from services.models.adapter_bundle import pack, sha256_hex
from services.models.structurers.base import (
    AdaptableStructurer,
    ProducerInfo,
    StructuredEvent,
    StructuringRequest,
)
from tests.unit.test_adapter_bundle import make_adapter
from vigil.adapter.v1 import adapter_pb2

BASE = "Qwen2.5-VL-7B-Instruct"


class RecordingStructurer(AdaptableStructurer):
    """Keeps the loaded/active bookkeeping an adaptable structurer has; writes no events."""

    def __init__(self) -> None:
        self.loaded: dict[str, Path] = {}
        self.active = ""
        self.loads: list[str] = []

    @property
    def producer(self) -> ProducerInfo:
        return ProducerInfo(kind="qwen2.5-vl", name=BASE, adapter=self.active)

    def structure(self, request: StructuringRequest) -> StructuredEvent:
        raise NotImplementedError

    @property
    def base_model(self) -> str:
        return BASE

    @property
    def adapter_version(self) -> str:
        return self.active

    def loaded_adapters(self) -> Sequence[str]:
        return list(self.loaded)

    def load_adapter(self, path: Path, version: str) -> None:
        assert (path / "adapter_config.json").is_file()
        self.loaded[version] = path
        self.loads.append(version)

    def activate_adapter(self, version: str) -> None:
        assert version == "" or version in self.loaded
        self.active = version

    def unload_adapter(self, version: str) -> None:
        assert version != self.active
        del self.loaded[version]


class Registry:
    """Bundles by sha256, as a fetch function sees them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bundles: dict[str, bytes] = {}
        self.unreachable = False

    def add(self, version: str, base: str = f"/m/{BASE}", corrupt: bool = False) -> adapter_pb2.AdapterManifest:
        data = pack(make_adapter(self.root / version, base=base))
        digest = sha256_hex(data)
        self.bundles[digest] = bytes([data[0] ^ 1]) + data[1:] if corrupt else data
        return adapter_pb2.AdapterManifest(
            version=version, base_model=Path(base).name, sha256=digest, size_bytes=len(data), registry="r:1"
        )

    def fetch(self, manifest: adapter_pb2.AdapterManifest) -> bytes:
        if self.unreachable:
            raise RetryableError("registry unreachable")
        return self.bundles[manifest.sha256]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[RecordingStructurer, Registry, AdapterManager]:
    structurer = RecordingStructurer()
    registry = Registry(tmp_path / "cloud")
    return structurer, registry, AdapterManager(structurer, tmp_path / "edge", registry.fetch)


def live_metric(version: str) -> float | None:
    return REGISTRY.get_sample_value("vigil_gating_adapter_live", {"version": version})


def test_install_swaps_and_publishes_the_live_version(setup) -> None:
    structurer, registry, manager = setup
    assert manager.handle_manifest(registry.add("v1")) == "installed"
    assert structurer.active == "v1" and manager.state.history == ["v1"]
    assert live_metric("v1") == 1.0 and live_metric("") == 0.0
    assert manager.handle_manifest(registry.add("v2")) == "installed"
    assert structurer.active == "v2" and live_metric("v1") == 0.0 and live_metric("v2") == 1.0
    status = manager.status()
    assert (status.live, status.previous, status.base_model) == ("v2", "v1", BASE)


def test_a_manifest_delivered_again_is_not_applied_twice(setup) -> None:
    structurer, registry, manager = setup
    m = registry.add("v1")
    manager.handle_manifest(m)
    assert manager.handle_manifest(m) == "seen"
    assert structurer.loads == ["v1"]


@pytest.mark.parametrize(
    ("kwargs", "reason", "line"),
    [
        ({"corrupt": True}, "checksum", "does not match the manifest"),
        ({"base": "/m/Qwen2.5-VL-3B-Instruct"}, "base_model", "announced for 'Qwen2.5-VL-3B-Instruct'"),
    ],
)
def test_a_bad_bundle_is_refused_and_the_live_adapter_stays(setup, caplog, kwargs, reason, line) -> None:
    structurer, registry, manager = setup
    manager.handle_manifest(registry.add("v1"))
    before = REGISTRY.get_sample_value("vigil_gating_adapter_refused_total", {"reason": reason}) or 0.0
    with caplog.at_level(logging.ERROR, logger="services.gating.adapters"):
        outcome = manager.handle_manifest(registry.add("bad", **kwargs))
    assert outcome.startswith(f"refused ({reason})")
    assert structurer.active == "v1" and manager.state.history == ["v1"]
    assert any("refused adapter bundle 'bad'" in r.message and line in r.message for r in caplog.records)
    assert "still running adapter v1" in caplog.text
    assert REGISTRY.get_sample_value("vigil_gating_adapter_refused_total", {"reason": reason}) == before + 1
    assert not (manager._root / "versions" / "bad").exists()


def test_unreadable_weights_are_refused(setup, tmp_path) -> None:
    structurer, registry, manager = setup
    adapter = make_adapter(tmp_path / "broken", base=f"/m/{BASE}")
    (adapter / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    data = pack(adapter)
    registry.bundles[sha256_hex(data)] = data
    m = adapter_pb2.AdapterManifest(version="w", base_model=BASE, sha256=sha256_hex(data), size_bytes=len(data))
    assert manager.handle_manifest(m).startswith("refused (weights)")
    assert structurer.active == "" and structurer.loads == []


def test_an_unreachable_registry_is_retried_not_refused(setup) -> None:
    structurer, registry, manager = setup
    m = registry.add("v1")
    registry.unreachable = True
    with pytest.raises(RetryableError):
        ManifestHandler(manager)(Message("t", 0, 0, None, m.SerializeToString()))
    assert "v1" not in manager.state.seen
    registry.unreachable = False
    ManifestHandler(manager)(Message("t", 0, 0, None, m.SerializeToString()))
    assert structurer.active == "v1"


def test_a_record_that_is_no_manifest_is_poison(setup) -> None:
    _, _, manager = setup
    with pytest.raises(PoisonMessage, match="AdapterManifest"):
        ManifestHandler(manager)(Message("t", 0, 0, None, b"\xff\xff\xff"))


def test_rollback_goes_back_one_and_is_not_undone_by_a_replay(setup) -> None:
    structurer, registry, manager = setup
    with pytest.raises(NothingToRollBack):
        manager.rollback()
    m1, m2 = registry.add("v1"), registry.add("v2")
    manager.handle_manifest(m1)
    manager.handle_manifest(m2)
    assert manager.rollback() == "v1" and structurer.active == "v1"
    assert manager.handle_manifest(m2) == "seen" and structurer.active == "v1"
    assert manager.rollback() == "" and structurer.active == ""
    assert not manager.status().HasField("previous")


def test_at_most_two_adapters_stay_in_memory(setup) -> None:
    structurer, registry, manager = setup
    for v in ("v1", "v2", "v3"):
        manager.handle_manifest(registry.add(v))
    assert sorted(structurer.loaded) == ["v2", "v3"]
    manager.rollback()
    manager.rollback()  # v1 again: loaded back from the store on disk
    assert structurer.active == "v1" and "v1" in structurer.loaded


def test_a_restart_restores_the_live_adapter_and_its_rollback_target(setup, tmp_path) -> None:
    _, registry, manager = setup
    manager.handle_manifest(registry.add("v1"))
    manager.handle_manifest(registry.add("v2"))
    again = RecordingStructurer()
    restored = AdapterManager(again, tmp_path / "edge", registry.fetch)
    assert again.active == "v2" and sorted(again.loaded) == ["v1", "v2"]
    assert restored.rollback() == "v1"


def test_adapter_updates_need_an_adaptable_structurer(tmp_path) -> None:
    from services.common.runtime import StageError
    from services.gating.bootstrap import build_adapter_manager
    from services.gating.config import AdapterUpdatesConfig
    from services.models.structurers.base import DetectorPriorStructurer

    with pytest.raises(StageError, match="takes no LoRA adapter: use the qwen2"):
        build_adapter_manager(AdapterUpdatesConfig(dir=tmp_path), DetectorPriorStructurer("accident"))
