"""Adapter bundles: deterministic packing, safe unpacking, and the checks that refuse a bad bundle."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from services.models.adapter_bundle import (
    BadBundle,
    check_adapter,
    check_version,
    pack,
    read_info,
    sha256_hex,
    unpack,
    verify,
)
from services.models.random_init import RANDOM_INIT_MARKER


def make_adapter(path: Path, base: str = "/models/Qwen2.5-VL-7B-Instruct", card: str = "# card\n") -> Path:
    """A PEFT-shaped adapter directory with real safetensors weights."""
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base, "r": 4}))
    save_file({"lora_A.weight": np.ones((4, 8), np.float32)}, str(path / "adapter_model.safetensors"))
    (path / "ADAPTER.md").write_text(card)
    return path


def test_pack_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    adapter = make_adapter(tmp_path / "a")
    (adapter / "optimizer.pt").write_bytes(b"not packed")
    data = pack(adapter)
    assert pack(adapter) == data
    out = unpack(data, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["ADAPTER.md", "adapter_config.json", "adapter_model.safetensors"]
    info = check_adapter(out, "Qwen2.5-VL-7B-Instruct")
    assert info.card == "# card\n" and not info.random_init


def test_random_marker_travels(tmp_path: Path) -> None:
    adapter = make_adapter(tmp_path / "a")
    (adapter / RANDOM_INIT_MARKER).write_text("random\n")
    assert read_info(unpack(pack(adapter), tmp_path / "out")).random_init


def test_verify_names_size_and_digest(tmp_path: Path) -> None:
    data = pack(make_adapter(tmp_path / "a"))
    verify(data, sha256_hex(data), len(data))
    with pytest.raises(BadBundle, match="bytes, the manifest says") as size:
        verify(data[:-1], sha256_hex(data), len(data))
    with pytest.raises(BadBundle, match="does not match the manifest") as digest:
        verify(data, "0" * 64, len(data))
    assert size.value.reason == digest.value.reason == "checksum"


def test_unpack_refuses_foreign_entries(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(BadBundle, match="unexpected entries") as exc:
        unpack(buf.getvalue(), tmp_path / "out")
    assert exc.value.reason == "format" and not (tmp_path / "escape.txt").exists()
    with pytest.raises(BadBundle, match="tar"):
        unpack(b"definitely not a tar archive" * 40, tmp_path / "out2")


def test_check_adapter_refuses_another_base_and_unreadable_weights(tmp_path: Path) -> None:
    adapter = make_adapter(tmp_path / "a", base="/x/Qwen2.5-VL-3B-Instruct")
    with pytest.raises(BadBundle, match=re.escape("trained on 'Qwen2.5-VL-3B-Instruct'")) as base:
        check_adapter(adapter, "Qwen2.5-VL-7B-Instruct")
    assert base.value.reason == "base_model"
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(BadBundle, match="unreadable") as weights:
        check_adapter(adapter, "Qwen2.5-VL-3B-Instruct")
    assert weights.value.reason == "weights"


def test_read_info_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "adapter_config.json").write_text("{}")
    with pytest.raises(BadBundle, match=re.escape("missing adapter_model.safetensors")):
        read_info(tmp_path / "a")


@pytest.mark.parametrize("version", ["", "../up", "a b", "x" * 65, ".hidden"])
def test_bad_versions(version: str) -> None:
    with pytest.raises(BadBundle, match="must match"):
        check_version(version)


def test_good_version() -> None:
    assert check_version("2026-12-04.1_rc") == "2026-12-04.1_rc"
