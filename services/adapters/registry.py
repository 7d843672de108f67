"""The registry's logic: accept a bundle, keep it by digest, write its manifest; no transport here."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from google.protobuf import json_format

from services.models.adapter_bundle import BadBundle, check_version, read_info, sha256_hex, unpack
from vigil.adapter.v1 import adapter_pb2

log = logging.getLogger(__name__)


class VersionConflict(ValueError):
    """A version is published again with other bytes: versions never change meaning."""


class UnknownBundle(KeyError):
    """No bundle with that digest."""


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


class AdapterRegistry:
    """Bundles on disk by sha256, one manifest per version (JSON), oldest first in `list()`."""

    def __init__(self, root: Path, public_address: str, max_bundle_bytes: int = 1024**3) -> None:
        self._root = Path(root)
        self._manifests = self._root / "manifests"
        self._manifests.mkdir(parents=True, exist_ok=True)
        self._public_address = public_address
        self._max_bytes = max_bundle_bytes
        self._lock = threading.Lock()

    def bundle_path(self, sha256: str) -> Path:
        """Where a bundle's bytes are kept; UnknownBundle when there is none."""
        path = self._root / f"{sha256}.bundle"
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256) or not path.is_file():
            raise UnknownBundle(f"no bundle with sha256 {sha256!r}")
        return path

    def get(self, version: str) -> adapter_pb2.AdapterManifest | None:
        """The manifest of a published version, or None."""
        path = self._manifests / f"{version}.json"
        if not path.is_file():
            return None
        return json_format.Parse(path.read_text(), adapter_pb2.AdapterManifest())

    def list(self) -> list[adapter_pb2.AdapterManifest]:
        """Every published manifest, oldest first."""
        found = [
            json_format.Parse(p.read_text(), adapter_pb2.AdapterManifest()) for p in self._manifests.glob("*.json")
        ]
        return sorted(found, key=lambda m: (m.created_time_ns, m.version))

    def publish(self, version: str, data: bytes) -> tuple[adapter_pb2.AdapterManifest, bool]:
        """Store a bundle under `version`; returns its manifest and whether it is new (False: same bytes again).

        BadBundle when the bytes are not an adapter bundle, VersionConflict when the version
        already names other bytes.
        """
        check_version(version)
        if len(data) > self._max_bytes:
            raise BadBundle("format", f"bundle is {len(data)} bytes, over this registry's {self._max_bytes}")
        with TemporaryDirectory() as tmp:
            # Unpacked once here so a broken bundle is refused at publish, not by every edge.
            info = read_info(unpack(data, Path(tmp) / "bundle"))
        digest = sha256_hex(data)
        with self._lock:
            existing = self.get(version)
            if existing is not None:
                if existing.sha256 != digest:
                    raise VersionConflict(
                        f"version {version} is already published with sha256 {existing.sha256[:12]}; "
                        "publish these weights under a new version"
                    )
                return existing, False
            path = self._root / f"{digest}.bundle"
            if not path.exists():
                _write_atomic(path, data)
            manifest = adapter_pb2.AdapterManifest(
                version=version,
                base_model=info.base_model,
                sha256=digest,
                size_bytes=len(data),
                created_time_ns=time.time_ns(),
                card=info.card,
                registry=self._public_address,
                random_init=info.random_init,
            )
            _write_atomic(self._manifests / f"{version}.json", json_format.MessageToJson(manifest).encode())
        log.info(
            "adapter %s published (%d bytes, sha256 %s, base %s)", version, len(data), digest[:12], info.base_model
        )
        return manifest, True

    def read(self, sha256: str, offset: int, size: int) -> bytes:
        """Up to `size` bytes of a bundle from `offset` (b"" past its end)."""
        with self.bundle_path(sha256).open("rb") as f:
            f.seek(offset)
            return f.read(size)
