"""LoRA adapters from the cloud, swapped into the running structurer (DAT section 3.1).

The cloud's adapter registry announces each bundle on the adapters topic (a small
:class:`AdapterManifest`); this module fetches the bundle it names, verifies it
(size and sha256, then the base model and the weights), unpacks it into the local
store and swaps it into the structurer between two events. Nothing restarts and
no frame waits longer than one adapter load: the structurer's own lock keeps a
swap from landing in the middle of an event.

The local store (``dir``) outlives restarts:

- ``versions/<version>/``: every adapter that was installed, as unpacked;
- ``state.json``: ``history`` (installed versions, oldest first: the last one is
  live, the one before it is what ``vigil adapter rollback`` goes back to) and
  ``seen`` (every version this edge has dealt with and how: installed, refused,
  rolled back), so a manifest delivered again is not applied twice and a version
  rolled back is not reinstalled by a replay.

A bad bundle is refused with one ERROR log line naming the version and the reason,
counted in ``vigil_gating_adapter_refused_total{reason}``; the live adapter stays.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError

from services.common.bus import Message, PoisonMessage, RetryableError
from services.gating import metrics
from services.models.adapter_bundle import BadBundle, check_adapter, check_version, unpack, verify
from services.models.structurers.base import AdaptableStructurer
from vigil.adapter.v1 import adapter_pb2

if TYPE_CHECKING:
    from services.common.grpc_runtime import ClientSecurity

log = logging.getLogger(__name__)

# Adapters kept in memory beside the base weights: the live one and the one rollback goes to.
LOADED = 2

# Fetches a bundle's bytes: (manifest) -> bytes; raises RetryableError while the cloud is unreachable.
Fetch = Callable[[adapter_pb2.AdapterManifest], bytes]


class NothingToRollBack(RuntimeError):
    """Rollback asked for with no earlier adapter installed."""


@dataclass
class AdapterState:
    """What the local store holds: installed versions in order (the last is live) and every version seen."""

    history: list[str] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)

    @property
    def live(self) -> str:
        """The live version ("" = the base model)."""
        return self.history[-1] if self.history else ""

    @property
    def previous(self) -> str | None:
        """What rollback goes back to ("" = the base model), None when nothing was installed."""
        if not self.history:
            return None
        return self.history[-2] if len(self.history) > 1 else ""

    @classmethod
    def load(cls, path: Path) -> AdapterState:
        """The state file, or an empty state when there is none yet."""
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        return cls(history=list(data.get("history", [])), seen=dict(data.get("seen", {})))

    def save(self, path: Path) -> None:
        """Write atomically (temp file, fsync, rename): a crash leaves the old state or the new one."""
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump({"history": self.history, "seen": self.seen}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)


class AdapterManager:
    """Installs, refuses and rolls back adapters of one running structurer; the store is `root`."""

    def __init__(self, structurer: AdaptableStructurer, root: Path, fetch: Fetch) -> None:
        self._structurer = structurer
        self._root = Path(root)
        self._fetch = fetch
        self._versions = self._root / "versions"
        self._versions.mkdir(parents=True, exist_ok=True)
        self._state_path = self._root / "state.json"
        # One change at a time: a manifest arriving while a rollback runs waits for it.
        self._lock = threading.Lock()
        self.state = AdapterState.load(self._state_path)
        self._restore()

    @property
    def base_model(self) -> str:
        """What adapters must be trained on."""
        return self._structurer.base_model

    @property
    def structurer_kind(self) -> str:
        """The structurer the adapters are for."""
        return self._structurer.producer.kind

    def _restore(self) -> None:
        """After a restart: load the rollback target and the live version again, so both are instant."""
        if not self.state.history:
            self._publish_metric()
            return
        for version in self.state.history[-LOADED:]:
            self._structurer.load_adapter(self._versions / version, version)
        self._structurer.activate_adapter(self.state.live)
        log.info("adapter %s restored from %s", self.state.live, self._state_path)
        self._publish_metric()

    def _publish_metric(self) -> None:
        live = self._structurer.adapter_version
        for version in {*self.state.seen, live, ""}:
            metrics.ADAPTER_LIVE.labels(version=version).set(1.0 if version == live else 0.0)

    def _swap_to(self, version: str) -> None:
        """Activate `version` (loading it if needed) and keep at most LOADED adapters in memory."""
        if version and version not in self._structurer.loaded_adapters():
            self._structurer.load_adapter(self._versions / version, version)
        self._structurer.activate_adapter(version)
        keep = set(self.state.history[-LOADED:])
        for loaded in self._structurer.loaded_adapters():
            if loaded not in keep and loaded != version:
                self._structurer.unload_adapter(loaded)
        metrics.ADAPTER_SWAPS.inc()
        self._publish_metric()

    def handle_manifest(self, manifest: adapter_pb2.AdapterManifest) -> str:
        """Install the bundle a manifest announces; returns what happened (installed, refused: ..., seen)."""
        with self._lock:
            version = manifest.version
            if version in self.state.seen:
                log.debug("adapter %s: already %s", version, self.state.seen[version])
                return "seen"
            try:
                self._install(manifest)
            except BadBundle as exc:
                outcome = f"refused ({exc.reason}): {exc}"
                log.error(
                    "refused adapter bundle %r (sha256 %s): %s; still running adapter %s",
                    version,
                    manifest.sha256[:12],
                    exc,
                    self.state.live or "(none)",
                )
                metrics.ADAPTER_REFUSED.labels(reason=exc.reason).inc()
            else:
                outcome = "installed"
                log.info("adapter %s installed and live (sha256 %s)", version, manifest.sha256[:12])
            self.state.seen[version] = outcome
            self.state.save(self._state_path)
            self._publish_metric()
            return outcome

    def _install(self, manifest: adapter_pb2.AdapterManifest) -> None:
        version = check_version(manifest.version)
        if manifest.base_model != self.base_model:
            # Refused before fetching: tens of MB across the WAN for an adapter this model cannot use.
            raise BadBundle(
                "base_model", f"announced for {manifest.base_model!r}, but this structurer runs {self.base_model!r}"
            )
        data = self._fetch(manifest)  # RetryableError propagates: the bus retries the manifest
        verify(data, manifest.sha256, manifest.size_bytes)
        staging = self._root / "incoming" / f"{version}.{os.getpid()}.{time.monotonic_ns()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            unpack(data, staging)
            check_adapter(staging, self.base_model)
            target = self._versions / version
            shutil.rmtree(target, ignore_errors=True)
            staging.replace(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        try:
            self._structurer.load_adapter(target, version)
        except ValueError as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise BadBundle("weights", str(exc)) from exc
        self.state.history.append(version)
        self._swap_to(version)

    def rollback(self) -> str:
        """Go back to the adapter before the live one; returns the version now live."""
        with self._lock:
            previous = self.state.previous
            if previous is None:
                raise NothingToRollBack("no adapter was installed: nothing to roll back to")
            rolled_back = self.state.history.pop()
            self.state.seen[rolled_back] = "rolled back"
            self._swap_to(previous)
            self.state.save(self._state_path)
            log.warning("adapter %s rolled back; %s is live", rolled_back, previous or "(none: base model)")
            return previous

    def status(self) -> adapter_pb2.AdapterStatus:
        """The live version and the rollback target."""
        with self._lock:
            status = adapter_pb2.AdapterStatus(
                live=self.state.live, base_model=self.base_model, structurer=self.structurer_kind
            )
            if self.state.previous is not None:
                status.previous = self.state.previous
            return status


class ManifestHandler:
    """Handles one record of the adapters topic: decode, install (or refuse), then the bus commits."""

    def __init__(self, manager: AdapterManager) -> None:
        self._manager = manager

    def __call__(self, msg: Message) -> None:
        """Undecodable records are poison (dead-lettered); an unreachable registry is retried."""
        try:
            manifest = adapter_pb2.AdapterManifest.FromString(msg.value)
        except DecodeError as exc:
            raise PoisonMessage(f"not a vigil.adapter.v1.AdapterManifest: {exc}") from exc
        if not manifest.version:
            raise PoisonMessage("adapter manifest without a version")
        self._manager.handle_manifest(manifest)


class GrpcBundleFetcher:
    """Fetches a bundle from the cloud's AdapterRegistry in chunks, resuming from the last byte on a broken link."""

    def __init__(
        self,
        registry: str = "",
        *,
        attempts: int = 5,
        timeout_s: float = 600.0,
        security: ClientSecurity | None = None,
    ) -> None:
        # An edge may reach the registry at another address than the one it announces (NAT, proxy).
        self._registry = registry
        self._attempts = attempts
        self._timeout_s = timeout_s
        self._security = security

    def _chunks(self, address: str, sha256: str, offset: int) -> Iterator[adapter_pb2.BundleChunk]:
        from services.common.grpc_runtime import open_channel
        from vigil.adapter.v1 import adapter_pb2_grpc

        with open_channel(address, self._security, [("grpc.max_receive_message_length", 8 * 1024 * 1024)]) as ch:
            stub = adapter_pb2_grpc.AdapterRegistryStub(ch)
            yield from stub.Fetch(adapter_pb2.FetchRequest(sha256=sha256, offset=offset), timeout=self._timeout_s)

    def __call__(self, manifest: adapter_pb2.AdapterManifest) -> bytes:
        """The bundle's bytes; BadBundle when the registry does not have it, RetryableError while unreachable."""
        import grpc

        address = self._registry or manifest.registry
        if not address:
            raise BadBundle("format", "the manifest names no registry and none is configured")
        buf = bytearray()
        for attempt in range(1, self._attempts + 1):
            try:
                for chunk in self._chunks(address, manifest.sha256, len(buf)):
                    if chunk.offset != len(buf):
                        raise BadBundle("format", f"registry sent offset {chunk.offset}, expected {len(buf)}")
                    buf += chunk.data
                    if len(buf) > manifest.size_bytes:
                        raise BadBundle(
                            "checksum", f"registry sent more than the announced {manifest.size_bytes} bytes"
                        )
                return bytes(buf)
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else None
                if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                    raise BadBundle("format", f"registry {address}: {exc.details()}") from exc
                log.warning(
                    "fetching adapter %s from %s broke at byte %d (attempt %d/%d): %s",
                    manifest.version,
                    address,
                    len(buf),
                    attempt,
                    self._attempts,
                    code,
                )
                time.sleep(min(2.0**attempt * 0.1, 5.0))
        raise RetryableError(
            f"adapter registry {address} unreachable; {len(buf)} of {manifest.size_bytes} bytes so far"
        )
