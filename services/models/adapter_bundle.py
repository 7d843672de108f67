"""LoRA adapter bundles (DAT section 3.1): what the cloud publishes and an edge verifies before loading.

A bundle is an uncompressed POSIX tar of one PEFT adapter directory, written
deterministically (sorted names, zeroed times and owners) so the same adapter
always has the same sha256:

- ``adapter_config.json`` and ``adapter_model.safetensors`` (required): the PEFT adapter;
- ``ADAPTER.md`` (the card ``vigil train structurer`` writes) and ``VIGIL_RANDOM_INIT`` (optional).

Nothing else is packed, and :func:`unpack` extracts only those names, so a bundle
can never write outside its directory. safetensors weights hardly compress, so
the tar is not compressed either. :func:`check_adapter` is what refuses a bundle
for another base model or with unreadable weights, before any model sees it.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from services.models.random_init import RANDOM_INIT_MARKER

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
CARD_FILE = "ADAPTER.md"
REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE)
BUNDLE_FILES = (*REQUIRED_FILES, CARD_FILE, RANDOM_INIT_MARKER)
# Versions name directories and PEFT adapters: keep them to a safe alphabet.
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class BadBundle(ValueError):
    """The bundle cannot be used: wrong checksum, not a bundle, another base model, unreadable weights."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        # One word for the refusal metric: checksum, format, base_model, weights.
        self.reason = reason


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter directory says about itself."""

    base_model: str
    card: str
    random_init: bool


def check_version(version: str) -> str:
    """The version if it is a usable name, else BadBundle."""
    if not VERSION_RE.match(version):
        raise BadBundle("format", f"version {version!r} must match {VERSION_RE.pattern}")
    return version


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def base_model_of(config: dict[str, object]) -> str:
    """The base model an adapter config names: the checkpoint directory's name, which survives moving machines."""
    return Path(str(config.get("base_model_name_or_path") or "")).name


def read_info(adapter_dir: Path) -> AdapterInfo:
    """Base model, card and random-init flag of an adapter directory; BadBundle when it is not one."""
    adapter_dir = Path(adapter_dir)
    missing = [name for name in REQUIRED_FILES if not (adapter_dir / name).is_file()]
    if missing:
        raise BadBundle("format", f"{adapter_dir} is not a PEFT adapter: missing {', '.join(missing)}")
    try:
        config = json.loads((adapter_dir / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadBundle("format", f"{adapter_dir / CONFIG_FILE} is not JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise BadBundle("format", f"{adapter_dir / CONFIG_FILE} is not a JSON object")
    base = base_model_of(config)
    if not base:
        raise BadBundle("format", f"{adapter_dir / CONFIG_FILE} names no base_model_name_or_path")
    card_path = adapter_dir / CARD_FILE
    card = card_path.read_text(errors="replace") if card_path.is_file() else ""
    return AdapterInfo(base_model=base, card=card, random_init=(adapter_dir / RANDOM_INIT_MARKER).exists())


def pack(adapter_dir: Path) -> bytes:
    """The bundle of an adapter directory: a deterministic tar of its bundle files."""
    adapter_dir = Path(adapter_dir)
    read_info(adapter_dir)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(BUNDLE_FILES):
            path = adapter_dir / name
            if not path.is_file():
                continue
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def unpack(data: bytes, dest: Path) -> Path:
    """Extract a bundle into `dest` (created; must not exist); BadBundle when it is not a well-formed bundle."""
    dest = Path(dest)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            unexpected = sorted(set(names) - set(BUNDLE_FILES))
            if unexpected or len(names) != len(set(names)) or not all(m.isfile() for m in members):
                raise BadBundle("format", f"not an adapter bundle: unexpected entries {unexpected or names}")
            dest.mkdir(parents=True)
            for member in members:
                f = tar.extractfile(member)
                if f is None:
                    raise BadBundle("format", f"bundle entry {member.name} has no data")
                (dest / member.name).write_bytes(f.read())
    except tarfile.TarError as exc:
        raise BadBundle("format", f"not an adapter bundle (tar): {exc}") from exc
    read_info(dest)
    return dest


def verify(data: bytes, sha256: str, size_bytes: int) -> None:
    """BadBundle unless `data` has the announced size and sha256."""
    if len(data) != size_bytes:
        raise BadBundle("checksum", f"bundle is {len(data)} bytes, the manifest says {size_bytes}")
    digest = sha256_hex(data)
    if digest != sha256:
        raise BadBundle("checksum", f"bundle sha256 {digest} does not match the manifest's {sha256}")


def check_adapter(adapter_dir: Path, base_model: str) -> AdapterInfo:
    """Refuse (BadBundle) an adapter for another base model, or whose weights safetensors cannot read."""
    info = read_info(adapter_dir)
    if info.base_model != base_model:
        raise BadBundle(
            "base_model", f"adapter was trained on {info.base_model!r}, but this structurer runs {base_model!r}"
        )
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(Path(adapter_dir) / WEIGHTS_FILE), framework="numpy") as f:
            keys = list(f.keys())
            for key in keys:
                f.get_slice(key).get_shape()
    except (SafetensorError, OSError, ValueError) as exc:
        raise BadBundle("weights", f"adapter weights {WEIGHTS_FILE} are unreadable: {exc}") from exc
    if not keys:
        raise BadBundle("weights", f"adapter weights {WEIGHTS_FILE} hold no tensors")
    return info
